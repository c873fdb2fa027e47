# Stage 4: all pairwise distances d_t(i, j), sharded over the rows i (scatter), merged exactly (gather).
# Gives the g-expansive constant, E[a, b], Ē[a, b], per-depth minima and nearest neighbours (method §3.1).


rule pairwise_shard:
    input:
        trajectories=run_dir("trajectories.h5"),
        code=package_sources("distances"),
    output:
        temp(run_dir("shards", "pairs_{scatteritem}.h5")),
    log:
        log_path("pairwise_{scatteritem}"),
    benchmark:
        benchmark_path("pairwise_{scatteritem}")
    conda:
        ENV
    resources:
        gpu=gpu_request(analysis("device")),
    params:
        labels=analysis("labels"),
        chunk=analysis("chunk"),
        device=analysis("device"),
    script:
        "../workflow_scripts/pairwise_shard.py"


rule pairwise_gather:
    input:
        shards=gather.shards(shard_path("pairs")),
        code=package_sources("distances"),
    output:
        run_dir("pairs.h5"),
    log:
        log_path("pairwise_gather"),
    benchmark:
        benchmark_path("pairwise_gather")
    conda:
        ENV
    script:
        "../workflow_scripts/pairwise_gather.py"
