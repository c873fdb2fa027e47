# Stage 4: all pairwise distances d_t(i, j), sharded over the rows i (scatter), merged exactly (gather).
# Gives the g-expansive constant, E[a, b], Ē[a, b], per-depth minima and nearest neighbours (method §3.1).
# The reading_* rules run the same stage for every extra reading (method §3.4) under
# results/{dataset}/{model}/readings/{reading}/, from the same trajectories.h5; the replicate_* rules for
# every training replicate 2..K (method §3.6) under results/{dataset}/{model}/replicates/{replicate}/.


rule pairwise_shard:
    input:
        trajectories=run_dir("trajectories.h5"),
        code=package_sources("distances", "readings"),
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
        reading=reading_params,
        name=reading_name,
        chunk=analysis("chunk"),
        device=analysis("device"),
    script:
        "../workflow_scripts/pairwise_shard.py"


use rule pairwise_shard as reading_pairwise_shard with:
    input:
        trajectories=reading_source("trajectories.h5"),
        code=package_sources("distances", "readings"),
    output:
        temp(reading_dir("shards", "pairs_{scatteritem}.h5")),
    log:
        log_path("readings/{reading}/pairwise_{scatteritem}"),
    benchmark:
        benchmark_path("readings/{reading}/pairwise_{scatteritem}")


use rule pairwise_shard as replicate_pairwise_shard with:
    input:
        trajectories=replicate_dir("trajectories.h5"),
        code=package_sources("distances", "readings"),
    output:
        temp(replicate_dir("shards", "pairs_{scatteritem}.h5")),
    log:
        log_path("replicates/{replicate}/pairwise_{scatteritem}"),
    benchmark:
        benchmark_path("replicates/{replicate}/pairwise_{scatteritem}")


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


use rule pairwise_gather as reading_pairwise_gather with:
    input:
        shards=gather.shards(shard_path("pairs", READING_FOLDER)),
        code=package_sources("distances"),
    output:
        reading_dir("pairs.h5"),
    log:
        log_path("readings/{reading}/pairwise_gather"),
    benchmark:
        benchmark_path("readings/{reading}/pairwise_gather")


use rule pairwise_gather as replicate_pairwise_gather with:
    input:
        shards=gather.shards(shard_path("pairs", REPLICATE_FOLDER)),
        code=package_sources("distances"),
    output:
        replicate_dir("pairs.h5"),
    log:
        log_path("replicates/{replicate}/pairwise_gather"),
    benchmark:
        benchmark_path("replicates/{replicate}/pairwise_gather")
