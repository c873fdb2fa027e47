# Stage 2: train one revised ResNet per (dataset, model, replicate k: seed + k - 1, method §3.6), keeping the
# weights of the `checkpoints` epochs as trained networks of their own (<folder>/epochs/<e>/model.pt), then
# evaluate every trained network (Table 1). {trained} is the network's folder
# (resdyn.runs.Run.training_folder), {training} a training job's (its last epoch's network).


rule train:
    input:
        data=dataset_file,
    output:
        model=training_file("model.pt"),
        log_csv=training_file("train_log.csv"),
        # Outputs, so a missing one (an epoch added to `checkpoints`) retrains; the list is not a param, so
        # removing an epoch reruns nothing.
        epochs=snapshot_files("model.pt"),
    log:
        log_file("train", "training"),
    benchmark:
        benchmark_file("train", "training")
    # Train every model before any analysis job: a model's analysis would otherwise hold a core that the
    # next training job waits for, and the two analyses then run one after the other instead of together.
    priority: 10
    conda:
        ENV
    # numerics 'portable' (the default, docs/numerics.md) computes on one thread whatever the job is given,
    # so it asks for one core and training jobs run side by side; 'fast' takes all cores, and torch gets
    # exactly that many threads (workflow_scripts/train.py), since its weights depend on the thread count.
    threads: lambda w: 1 if training_params(w)["numerics"] == "portable" else workflow.cores
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
        model=trained_file("model.pt"),
        data=dataset_file,
    output:
        trained_file("metrics.json"),
    log:
        log_file("evaluate", "trained"),
    benchmark:
        benchmark_file("evaluate", "trained")
    conda:
        ENV
    params:
        device=lambda w: training_params(w)["device"],
        batch_size=analysis("batch_size"),
    script:
        "../workflow_scripts/evaluate.py"
