# Per-depth heads g_θt (method §3.5), for readings with `head: probes`: one linear probe per depth fitted on
# the frozen network's training states, the probes' own trajectory file (p_t = softmax(W_t x_t + b_t)) and
# its per-depth Lipschitz constants, and a figure of probe and final-head accuracy against depth.


rule probes:
    input:
        model=run_dir("model.pt"),
        data=os.path.join(RESULTS, "data", "{dataset}.h5"),
    output:
        probes=run_dir("probes", "probes.pt"),
        table=report(
            run_dir("probes", "probes.csv"),
            category="Per-depth heads",
            subcategory="{dataset} / {model}",
            caption="../report/probes_table.rst",
        ),
    log:
        log_path("probes"),
    benchmark:
        benchmark_path("probes")
    conda:
        ENV
    threads: workflow.cores
    resources:
        gpu=gpu_request(config["probes"]["device"]),
    params:
        settings=config["probes"],
        batch_size=analysis("batch_size"),
        # Not an output: it survives a killed job, so the rerun resumes from the last finished epoch.
        checkpoint=run_dir("probes", "checkpoint.pt"),
    script:
        "../workflow_scripts/probes.py"


use rule trajectories as probe_trajectories with:
    input:
        model=run_dir("model.pt"),
        data=os.path.join(RESULTS, "data", "{dataset}.h5"),
        probes=run_dir("probes", "probes.pt"),
    output:
        run_dir("probes", "trajectories.h5"),
    log:
        log_path("probe_trajectories"),
    benchmark:
        benchmark_path("probe_trajectories")


use rule lipschitz as probe_lipschitz with:
    input:
        trajectories=run_dir("probes", "trajectories.h5"),
        model=run_dir("model.pt"),
        data=os.path.join(RESULTS, "data", "{dataset}.h5"),
        code=package_sources("lipschitz"),
    output:
        run_dir("probes", "lipschitz.json"),
    log:
        log_path("probe_lipschitz"),
    benchmark:
        benchmark_path("probe_lipschitz")


rule probes_figure:
    input:
        tables=expand(run_dir("probes", "probes.csv"), model=MODELS, allow_missing=True),
        code=package_sources("figures"),
    output:
        report(
            os.path.join(FIGURES, "probes_{dataset}.png"),
            category="Per-depth heads",
            subcategory="{dataset}",
            caption="../report/probes_figure.rst",
        ),
    log:
        os.path.join(RESULTS, "logs", "{dataset}", "probes_figure.log"),
    benchmark:
        os.path.join(RESULTS, "benchmarks", "{dataset}", "probes_figure.tsv")
    conda:
        ENV
    params:
        models=MODELS,
    script:
        "../workflow_scripts/probes_figure.py"
