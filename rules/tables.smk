# Stage 8: the paper's tables (CSV, Markdown, LaTeX) and figures, collected into Snakemake's HTML report.
# Each table iterates over runs (resdyn.runs.Run, passed as params beside their files): Tables 1-2 over
# every trained network of the last epoch (mean ± sd over replicates when `replicates` > 1), the readings
# table over every run of the last epoch, Table 3 over replicate 1 of each (dataset, model), the dynamics
# table over every run. The figures are a trained network's own files.


rule table1:
    input:
        metrics=files_of(LAST_TRAINED_RUNS, "metrics.json"),
        code=package_sources("tables", "paper_reference"),
    output:
        **table_outputs(results("tables", "table1"), "table1.rst"),
    log:
        results("logs", "tables", "table1.log"),
    benchmark:
        results("benchmarks", "tables", "table1.tsv")
    conda:
        ENV
    params:
        stem=table_stem,
        runs=[run.params() for run in LAST_TRAINED_RUNS],
        paper_rows=paper_rows(LAST_TRAINED_RUNS),
    script:
        "../workflow_scripts/table1.py"


rule table2:
    input:
        constants=files_of(LAST_TRAINED_RUNS, "constants.json"),
        # the constants at the common reference size (method §3.6), the same runs in the same order
        sample_size=files_of(LAST_TRAINED_RUNS, "sample_size.json"),
        code=package_sources("tables", "paper_reference"),
    output:
        **table_outputs(results("tables", "table2"), "table2.rst"),
    log:
        results("logs", "tables", "table2.log"),
    benchmark:
        results("benchmarks", "tables", "table2.tsv")
    conda:
        ENV
    params:
        stem=table_stem,
        runs=[run.params() for run in LAST_TRAINED_RUNS],
        paper_rows=paper_rows(LAST_TRAINED_RUNS),
    script:
        "../workflow_scripts/table2.py"


rule readings_table:
    input:
        constants=files_of(LAST_RUNS, "constants.json"),
        sample_size=files_of(LAST_RUNS, "sample_size.json"),
        code=package_sources("tables", "paper_reference"),
    output:
        **table_outputs(results("tables", "readings"), "readings.rst"),
    log:
        results("logs", "tables", "readings.log"),
    benchmark:
        results("benchmarks", "tables", "readings.tsv")
    conda:
        ENV
    params:
        stem=table_stem,
        runs=[run.params() for run in LAST_RUNS],
        paper_rows=paper_rows(LAST_RUNS),
    script:
        "../workflow_scripts/readings_table.py"


rule table3:
    input:
        pairs=files_of(MAIN_RUNS, "pairs.h5"),
        trajectories=files_of(MAIN_RUNS, "trajectories.h5"),
        code=package_sources("tables"),
    output:
        **table_outputs(results("tables", "table3"), "table3.rst"),
    log:
        results("logs", "tables", "table3.log"),
    benchmark:
        results("benchmarks", "tables", "table3.tsv")
    conda:
        ENV
    params:
        stem=table_stem,
        runs=[run.params() for run in MAIN_RUNS],
        k=analysis("table3_pairs"),
    script:
        "../workflow_scripts/table3.py"


rule figures:
    input:
        data=dataset_file,
        trajectories=trained_file("trajectories.h5"),
        pairs=trained_file("pairs.h5"),
        shadowing=trained_file("shadowing.h5"),
        constants=trained_file("constants.json"),
        code=package_sources("figures", "tables"),
    output:
        **table_outputs(trained_file("tables/orbit"), "best_orbit_table.rst", subcategory="{trained}"),
        figure2=run_report(trained_file("figures/figure2.png"), "Figures 2-3", "figure2.rst", "{trained}"),
        figure3=run_report(trained_file("figures/figure3.png"), "Figures 2-3", "figure3.rst", "{trained}"),
        pairs_png=run_report(trained_file("figures/table3.png"), "Table 3", "table3_pairs.rst", "{trained}"),
        orbit_png=run_report(trained_file("figures/orbit.png"), "Tables 4-5", "best_orbit.rst", "{trained}"),
    log:
        log_file("figures", "trained"),
    benchmark:
        benchmark_file("figures", "trained")
    conda:
        ENV
    params:
        run=trained_params,
        orbit_stem=table_stem,
        k=analysis("table3_pairs"),
    script:
        "../workflow_scripts/figures.py"


# The accuracy and constants of every run against the epoch whose weights it analyses (config
# `checkpoints`), with the seed band when `replicates` > 1; one figure per (dataset, model).
rule dynamics:
    input:
        metrics=files_of(RUNS, "metrics.json", trained=True),
        constants=files_of(RUNS, "constants.json"),
        code=package_sources("tables", "figures"),
    output:
        **table_outputs(results("tables", "dynamics"), "dynamics.rst"),
        figures=[
            report(
                dynamics_figure(dataset, model),
                category="Training dynamics",
                caption="../report/dynamics_figure.rst",
            )
            for dataset, model in NETWORK_KEYS
        ],
    log:
        results("logs", "tables", "dynamics.log"),
    benchmark:
        results("benchmarks", "tables", "dynamics.tsv")
    conda:
        ENV
    params:
        stem=table_stem,
        runs=[run.params() for run in RUNS],
        epochs=[run_epoch(run) for run in RUNS],
        figure_keys=NETWORK_KEYS,
    script:
        "../workflow_scripts/dynamics.py"
