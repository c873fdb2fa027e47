# Measured robustness (docs/robustness.md): clean, Gaussian-noise and PGD accuracies and the median minimal
# adversarial perturbation of one trained network on its test images. It depends on the network, not on the
# reading, so it lives in the training folder {trained}; the correlation with every run's constants is in
# rule robustness_table below. Like training and the trajectories, it does not list its modules as
# inputs (an edit to resdyn/robustness.py must not silently rerun every attack): `snakemake -R robustness`.


rule robustness:
    input:
        model=trained_file("model.pt"),
        data=dataset_file,
    output:
        trained_file("robustness.csv"),
    log:
        log_file("robustness", "trained"),
    benchmark:
        benchmark_file("robustness", "trained")
    conda:
        ENV
    resources:
        gpu=gpu_request(config["robustness"]["device"]),
    params:
        run=trained_params,
        settings=attack_settings(config["robustness"]),
    script:
        "../workflow_scripts/robustness.py"


# Spearman's ρ of every run's constants (every reading) with its network's measured robustness, across all
# runs, with a bootstrap interval; and the scatter of the reading `definition`'s constants.
rule robustness_table:
    input:
        constants=files_of(RUNS, "constants.json"),
        robustness=files_of(TRAINED_RUNS, "robustness.csv", trained=True),
        code=package_sources("tables", "figures"),
    output:
        **table_outputs(results("tables", "robustness"), "robustness.rst"),
        figure=report(
            results("figures", "robustness.png"),
            category="Robustness",
            caption="../report/robustness_figure.rst",
        ),
    log:
        results("logs", "tables", "robustness.log"),
    benchmark:
        results("benchmarks", "tables", "robustness.tsv")
    conda:
        ENV
    params:
        stem=table_stem,
        runs=[run.params() for run in RUNS],
        trained_runs=[run.params() for run in TRAINED_RUNS],
        trained_accuracy=config["robustness"]["trained_accuracy"],
        n_boot=2000,
        seed=config["robustness"]["seed"],
    script:
        "../workflow_scripts/robustness_table.py"
