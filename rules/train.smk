# Stage 2: train one revised ResNet per (dataset, model), then evaluate it (Table 1). The replicate_* rules
# train and evaluate replicates 2..K (config `replicates`, method §3.6): the same rules with the seed
# shifted by k - 1 (training_params) under results/{dataset}/{model}/replicates/{k}/.


rule train:
    input:
        data=os.path.join(RESULTS, "data", "{dataset}.h5"),
    output:
        model=run_dir("model.pt"),
        log_csv=run_dir("train_log.csv"),
    log:
        log_path("train"),
    benchmark:
        benchmark_path("train")
    # Train every model before any analysis job: a model's analysis would otherwise hold a core that the
    # next training job waits for, and the two analyses then run one after the other instead of together.
    priority: 10
    conda:
        ENV
    # All cores, and torch gets exactly that many threads (workflow_scripts/train.py): the weights depend on
    # the thread count, so it must not change with what else runs.
    threads: workflow.cores
    resources:
        gpu=gpu_request(lambda w: training_params(w)["device"]),
    params:
        model=model_entry,
        training=training_params,
        # Not an output: it survives a killed job, so the rerun resumes from the last finished epoch.
        checkpoint=checkpoint_path,
    script:
        "../workflow_scripts/train.py"


rule evaluate:
    input:
        model=run_dir("model.pt"),
        data=os.path.join(RESULTS, "data", "{dataset}.h5"),
    output:
        run_dir("metrics.json"),
    log:
        log_path("evaluate"),
    benchmark:
        benchmark_path("evaluate")
    conda:
        ENV
    params:
        device=lambda w: training_params(w)["device"],
        batch_size=analysis("batch_size"),
    script:
        "../workflow_scripts/evaluate.py"


use rule train as replicate_train with:
    output:
        model=replicate_dir("model.pt"),
        log_csv=replicate_dir("train_log.csv"),
    log:
        log_path("replicates/{replicate}/train"),
    benchmark:
        benchmark_path("replicates/{replicate}/train")


use rule evaluate as replicate_evaluate with:
    input:
        model=replicate_dir("model.pt"),
        data=os.path.join(RESULTS, "data", "{dataset}.h5"),
    output:
        replicate_dir("metrics.json"),
    log:
        log_path("replicates/{replicate}/evaluate"),
    benchmark:
        benchmark_path("replicates/{replicate}/evaluate")
