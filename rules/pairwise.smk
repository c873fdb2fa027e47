# Stage 4: all pairwise distances d_t(i, j) of one run, sharded over the rows i (scatter), merged exactly
# (gather). Gives the g-expansive constant, E[a, b], Ē[a, b], per-depth minima and nearest neighbours
# (method §3.1) under the run's reading (method §3.4).


rule pairwise_shard:
    input:
        trajectories=source_of("trajectories.h5"),
        code=package_sources("distances", "readings"),
    output:
        temp(results("{run}", "shards", "pairs_{scatteritem}.h5")),
    log:
        log_file("pairwise_{scatteritem}"),
    benchmark:
        benchmark_file("pairwise_{scatteritem}")
    conda:
        ENV
    # The CPU kernel's numba threads (workflow_scripts/pairwise_shard.py holds it to them): one, the shards
    # being the parallelism (docs/performance.md, "Threads per job"); --set-threads pairwise_shard=N gives
    # more, with the same results. On a GPU the thread only feeds it.
    threads: 1
    resources:
        gpu=gpu_request(analysis("device")),
    params:
        run=run_params,
        chunk=analysis("chunk"),
        device=analysis("device"),
    script:
        "../workflow_scripts/pairwise_shard.py"


rule pairwise_gather:
    input:
        shards=gather.shards(shard_file("pairs")),
        code=package_sources("distances"),
    output:
        run_file("pairs.h5"),
    log:
        log_file("pairwise_gather"),
    benchmark:
        benchmark_file("pairwise_gather")
    conda:
        ENV
    # The shards are temporary: a settings change must reach this job through its own params, or a
    # shard job killed after the change would leave the old pairs.h5 looking up to date.
    params:
        run=run_params,
    script:
        "../workflow_scripts/pairwise_gather.py"
