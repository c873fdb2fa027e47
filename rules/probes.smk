# Per-depth heads g_θt (method §3.5), for readings with `head: probes`: one linear probe per depth fitted on
# the frozen network's training states, the probes' own trajectory file (p_t = softmax(W_t x_t + b_t)) and
# its per-depth Lipschitz constants (the trajectories and lipschitz rules with the probes' files), and a
# figure of probe and final-head accuracy against depth per dataset.


rule probes:
    input:
        model=trained_file("model.pt"),
        data=dataset_file,
    output:
        probes=probes_file("probes.pt"),
        table=run_report(probes_file("probes.csv"), "Per-depth heads", "probes_table.rst", "{trained}"),
    log:
        log_file("probes", "trained"),
    benchmark:
        benchmark_file("probes", "trained")
    conda:
        ENV
    threads: workflow.cores
    resources:
        gpu=gpu_request(config["probes"]["device"]),
    params:
        settings=config["probes"],
        batch_size=analysis("batch_size"),
    script:
        "../workflow_scripts/probes.py"


use rule trajectories as probe_trajectories with:
    input:
        model=trained_file("model.pt"),
        data=dataset_file,
        probes=probes_file("probes.pt"),
    output:
        probes_file("trajectories.h5"),
    log:
        log_file("probe_trajectories", "trained"),
    benchmark:
        benchmark_file("probe_trajectories", "trained")


use rule lipschitz as probe_lipschitz with:
    input:
        trajectories=probes_file("trajectories.h5"),
        model=trained_file("model.pt"),
        data=dataset_file,
        code=package_sources("lipschitz"),
    output:
        probes_file("lipschitz.json"),
    log:
        log_file("probe_lipschitz", "trained"),
    benchmark:
        benchmark_file("probe_lipschitz", "trained")


rule probes_figure:
    input:
        # replicate 1 of every model of the dataset
        tables=lambda w: [
            results(run.trained_file(f"{PROBES_FOLDER}/probes.csv")) for run in main_probe_runs(w.dataset)
        ],
        code=package_sources("figures"),
    output:
        run_report(
            results("figures", "{dataset}", "probes.png"),
            "Per-depth heads",
            "probes_figure.rst",
            "{dataset}",
        ),
    log:
        log_file("probes_figure", "dataset"),
    benchmark:
        benchmark_file("probes_figure", "dataset")
    conda:
        ENV
    params:
        models=lambda w: [run.model for run in main_probe_runs(w.dataset)],
    script:
        "../workflow_scripts/probes_figure.py"
