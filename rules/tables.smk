# Stage 8: the paper's tables (CSV, Markdown, LaTeX) and figures, collected into Snakemake's HTML report.
# Helpers (table_outputs, table_stem, figure) live in rules/common.smk. Tables 1-2 read every training
# replicate (mean ± sd when `replicates` > 1); Table 3, the readings table and the figures read replicate 1.


rule table1:
    input:
        # every replicate of every (dataset, model): mean ± sd when config `replicates` > 1
        metrics=[path for *_, path in replicate_runs("metrics.json")],
        code=package_sources("tables", "paper_reference"),
    output:
        **table_outputs("table1", "table1.rst"),
    log:
        os.path.join(RESULTS, "logs", "tables", "table1.log"),
    benchmark:
        os.path.join(RESULTS, "benchmarks", "tables", "table1.tsv")
    conda:
        ENV
    params:
        stem=table_stem,
        runs=[run for *run, _ in replicate_runs("metrics.json")],
        paper_reference=config["paper_reference"],
    script:
        "../workflow_scripts/table1.py"


rule table2:
    input:
        constants=[path for *_, path in replicate_runs("constants.json")],
        # the constants at the common reference size (method §3.6), the same runs in the same order
        sample_size=[path for *_, path in replicate_runs("sample_size.json")],
        code=package_sources("tables", "paper_reference"),
    output:
        **table_outputs("table2", "table2.rst"),
    log:
        os.path.join(RESULTS, "logs", "tables", "table2.log"),
    benchmark:
        os.path.join(RESULTS, "benchmarks", "tables", "table2.tsv")
    conda:
        ENV
    params:
        stem=table_stem,
        runs=[run for *run, _ in replicate_runs("constants.json")],
        paper_reference=config["paper_reference"],
    script:
        "../workflow_scripts/table2.py"


rule readings_table:
    input:
        constants=[path for *_, path in readings_table_runs()],
        sample_size=[path for *_, path in readings_table_runs("sample_size.json")],
        code=package_sources("tables", "paper_reference"),
    output:
        **table_outputs("readings", "readings.rst"),
    log:
        os.path.join(RESULTS, "logs", "tables", "readings.log"),
    benchmark:
        os.path.join(RESULTS, "benchmarks", "tables", "readings.tsv")
    conda:
        ENV
    params:
        stem=table_stem,
        runs=[run for *run, _ in readings_table_runs()],
        paper_reference=config["paper_reference"],
    script:
        "../workflow_scripts/readings_table.py"


rule table3:
    input:
        pairs=per_run(run_dir("pairs.h5")),
        trajectories=per_run(run_dir("trajectories.h5")),
        code=package_sources("tables"),
    output:
        **table_outputs("table3", "table3.rst"),
    log:
        os.path.join(RESULTS, "logs", "tables", "table3.log"),
    benchmark:
        os.path.join(RESULTS, "benchmarks", "tables", "table3.tsv")
    conda:
        ENV
    params:
        stem=table_stem,
        k=analysis("table3_pairs"),
    script:
        "../workflow_scripts/table3.py"


rule figures:
    input:
        data=os.path.join(RESULTS, "data", "{dataset}.h5"),
        trajectories=run_dir("trajectories.h5"),
        pairs=run_dir("pairs.h5"),
        shadowing=run_dir("shadowing.h5"),
        constants=run_dir("constants.json"),
        code=package_sources("figures", "tables"),
    output:
        **table_outputs(
            "orbit_{dataset}_{model}",
            "best_orbit_table.rst",
            subcategory="{dataset} / {model}",
        ),
        figure2=figure("figure2", "Figures 2-3", "figure2.rst"),
        figure3=figure("figure3", "Figures 2-3", "figure3.rst"),
        pairs_png=figure("table3", "Table 3", "table3_pairs.rst"),
        orbit_png=figure("orbit", "Tables 4-5", "best_orbit.rst"),
    log:
        log_path("figures"),
    benchmark:
        benchmark_path("figures")
    conda:
        ENV
    params:
        orbit_stem=table_stem,
        k=analysis("table3_pairs"),
    script:
        "../workflow_scripts/figures.py"
