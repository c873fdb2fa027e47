# Stage 8: the paper's tables (CSV, Markdown, LaTeX) and figures, collected into Snakemake's HTML report.

TABLES = os.path.join(RESULTS, "tables")


def table_outputs(number, caption):
    """table{number}.csv as a report item (with its caption), .md and .tex beside it."""
    stem = os.path.join(TABLES, f"table{number}")
    return {
        "csv": report(stem + ".csv", category="Tables", caption=f"../report/{caption}"),
        "md": stem + ".md",
        "tex": stem + ".tex",
    }


rule table1:
    input:
        metrics=per_run(run_dir("metrics.json")),
        code=package_sources("tables", "paper_reference"),
    output:
        **table_outputs(1, "table1.rst"),
    params:
        runs=per_run("{dataset}/{model}"),
        paper_reference=config["paper_reference"],
    log:
        os.path.join(RESULTS, "logs", "tables", "table1.log"),
    benchmark:
        os.path.join(RESULTS, "benchmarks", "tables", "table1.tsv")
    conda:
        ENV
    script:
        "../workflow_scripts/table1.py"


rule table2:
    input:
        constants=per_run(run_dir("constants.json")),
        code=package_sources("tables", "paper_reference"),
    output:
        **table_outputs(2, "table2.rst"),
    params:
        runs=per_run("{dataset}/{model}"),
        paper_reference=config["paper_reference"],
    log:
        os.path.join(RESULTS, "logs", "tables", "table2.log"),
    benchmark:
        os.path.join(RESULTS, "benchmarks", "tables", "table2.tsv")
    conda:
        ENV
    script:
        "../workflow_scripts/table2.py"


rule table3:
    input:
        pairs=per_run(run_dir("pairs.h5")),
        trajectories=per_run(run_dir("trajectories.h5")),
        code=package_sources("tables"),
    output:
        **table_outputs(3, "table3.rst"),
    params:
        runs=per_run("{dataset}/{model}"),
        k=analysis("table3_pairs"),
    log:
        os.path.join(RESULTS, "logs", "tables", "table3.log"),
    benchmark:
        os.path.join(RESULTS, "benchmarks", "tables", "table3.tsv")
    conda:
        ENV
    script:
        "../workflow_scripts/table3.py"


rule figures:
    input:
        data=os.path.join(RESULTS, "data", "{dataset}.h5"),
        trajectories=run_dir("trajectories.h5"),
        pairs=run_dir("pairs.h5"),
        shadowing=run_dir("shadowing.h5"),
        constants=run_dir("constants.json"),
        code=package_sources("figures"),
    output:
        figure2=report(
            run_dir("figure2.png"),
            category="Figures 2-3",
            subcategory="{dataset} / {model}",
            caption="../report/figure2.rst",
        ),
        figure3=report(
            run_dir("figure3.png"),
            category="Figures 2-3",
            subcategory="{dataset} / {model}",
            caption="../report/figure3.rst",
        ),
        pairs_png=report(
            run_dir("table3_pairs.png"),
            category="Table 3",
            subcategory="{dataset} / {model}",
            caption="../report/table3_pairs.rst",
        ),
        orbit_png=report(
            run_dir("best_orbit.png"),
            category="Tables 4-5",
            subcategory="{dataset} / {model}",
            caption="../report/best_orbit.rst",
        ),
        orbit_csv=run_dir("best_orbit.csv"),
    params:
        k=analysis("table3_pairs"),
    log:
        log_path("figures"),
    benchmark:
        benchmark_path("figures")
    conda:
        ENV
    script:
        "../workflow_scripts/figures.py"
