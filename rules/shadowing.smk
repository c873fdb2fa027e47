# Stage 5: greedy pseudo-orbits, their shadowing errors (sharded over orbits), and every g-shadowing
# estimate: best tracing, the independent pairing and the curve (method §3.2, §3.4). The reading_* rules
# run the same stage for every extra reading, the replicate_* rules for every training replicate 2..K.


rule shadowing_shard:
    input:
        trajectories=run_dir("trajectories.h5"),
        pairs=run_dir("pairs.h5"),
        code=package_sources("shadowing", "distances", "readings"),
    output:
        temp(run_dir("shards", "shadowing_{scatteritem}.h5")),
    log:
        log_path("shadowing_{scatteritem}"),
    benchmark:
        benchmark_path("shadowing_{scatteritem}")
    conda:
        ENV
    # No GPU: the exact min-max kernel runs on the CPU (numba, early abandoning).
    threads: 2
    params:
        reading=reading_params,
        name=reading_name,
        chunk=analysis("chunk"),
    script:
        "../workflow_scripts/shadowing_shard.py"


use rule shadowing_shard as reading_shadowing_shard with:
    input:
        trajectories=reading_source("trajectories.h5"),
        pairs=reading_dir("pairs.h5"),
        code=package_sources("shadowing", "distances", "readings"),
    output:
        temp(reading_dir("shards", "shadowing_{scatteritem}.h5")),
    log:
        log_path("readings/{reading}/shadowing_{scatteritem}"),
    benchmark:
        benchmark_path("readings/{reading}/shadowing_{scatteritem}")


use rule shadowing_shard as replicate_shadowing_shard with:
    input:
        trajectories=replicate_dir("trajectories.h5"),
        pairs=replicate_dir("pairs.h5"),
        code=package_sources("shadowing", "distances", "readings"),
    output:
        temp(replicate_dir("shards", "shadowing_{scatteritem}.h5")),
    log:
        log_path("replicates/{replicate}/shadowing_{scatteritem}"),
    benchmark:
        benchmark_path("replicates/{replicate}/shadowing_{scatteritem}")


rule shadowing_gather:
    input:
        shards=gather.shards(shard_path("shadowing")),
        code=package_sources("shadowing", "figures", "readings"),
    output:
        h5=run_dir("shadowing.h5"),
        curve=report(
            run_dir("shadowing_curve.csv"),
            category="g-shadowing",
            subcategory="{dataset} / {model}",
            caption="../report/shadowing_curve_table.rst",
        ),
        plot=report(
            run_dir("shadowing_curve.png"),
            category="g-shadowing",
            subcategory="{dataset} / {model}",
            caption="../report/shadowing_curve.rst",
        ),
    log:
        log_path("shadowing_gather"),
    benchmark:
        benchmark_path("shadowing_gather")
    conda:
        ENV
    params:
        reading=reading_params,
        name=reading_name,
        quantiles=analysis("curve_quantiles"),
    script:
        "../workflow_scripts/shadowing_gather.py"


use rule shadowing_gather as reading_shadowing_gather with:
    input:
        shards=gather.shards(shard_path("shadowing", READING_FOLDER)),
        code=package_sources("shadowing", "figures", "readings"),
    output:
        h5=reading_dir("shadowing.h5"),
        curve=report(
            reading_dir("shadowing_curve.csv"),
            category="Readings",
            subcategory="{dataset} / {model} / {reading}",
            caption="../report/shadowing_curve_table.rst",
        ),
        plot=report(
            reading_dir("shadowing_curve.png"),
            category="Readings",
            subcategory="{dataset} / {model} / {reading}",
            caption="../report/shadowing_curve.rst",
        ),
    log:
        log_path("readings/{reading}/shadowing_gather"),
    benchmark:
        benchmark_path("readings/{reading}/shadowing_gather")


use rule shadowing_gather as replicate_shadowing_gather with:
    input:
        shards=gather.shards(shard_path("shadowing", REPLICATE_FOLDER)),
        code=package_sources("shadowing", "figures", "readings"),
    output:
        h5=replicate_dir("shadowing.h5"),
        curve=replicate_dir("shadowing_curve.csv"),
        plot=replicate_dir("shadowing_curve.png"),
    log:
        log_path("replicates/{replicate}/shadowing_gather"),
    benchmark:
        benchmark_path("replicates/{replicate}/shadowing_gather")
