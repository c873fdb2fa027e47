# Stage 3: every test image's probability trajectory p_t(i) = g(x_t(i)), t = 0..T (method §2, §6), once
# per trained network; every reading of that network reads it.


rule trajectories:
    input:
        model=trained_file("model.pt"),
        data=dataset_file,
    output:
        trained_file("trajectories.h5"),
    log:
        log_file("trajectories", "trained"),
    benchmark:
        benchmark_file("trajectories", "trained")
    conda:
        ENV
    resources:
        gpu=gpu_request(analysis("device")),
    params:
        run=trained_params,
        batch_size=analysis("batch_size"),
        store_states=analysis("store_states"),
        device=analysis("device"),
    script:
        "../workflow_scripts/trajectories.py"
