# Stage 3: every test image's probability trajectory p_t(i) = g(x_t(i)), t = 0..T (method §2, §6); the
# replicate_* rule for training replicates 2..K.


rule trajectories:
    input:
        model=run_dir("model.pt"),
        data=os.path.join(RESULTS, "data", "{dataset}.h5"),
    output:
        run_dir("trajectories.h5"),
    log:
        log_path("trajectories"),
    benchmark:
        benchmark_path("trajectories")
    conda:
        ENV
    resources:
        gpu=gpu_request(analysis("device")),
    params:
        batch_size=analysis("batch_size"),
        store_states=analysis("store_states"),
        device=analysis("device"),
    script:
        "../workflow_scripts/trajectories.py"


use rule trajectories as replicate_trajectories with:
    input:
        model=replicate_dir("model.pt"),
        data=os.path.join(RESULTS, "data", "{dataset}.h5"),
    output:
        replicate_dir("trajectories.h5"),
    log:
        log_path("replicates/{replicate}/trajectories"),
    benchmark:
        benchmark_path("replicates/{replicate}/trajectories")
