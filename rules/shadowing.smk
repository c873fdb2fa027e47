# Stage 5: greedy pseudo-orbits from the nearest-neighbour tables, their shadowing errors (sharded over
# orbits), and both g-shadowing estimates (method §3.2).


rule shadowing_shard:
    input:
        trajectories=run_dir("trajectories.h5"),
        pairs=run_dir("pairs.h5"),
        code=package_sources("shadowing", "distances"),
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
        chunk=analysis("chunk"),
    script:
        "../workflow_scripts/shadowing_shard.py"


rule shadowing_gather:
    input:
        shards=gather.shards(shard_path("shadowing")),
        pairs=run_dir("pairs.h5"),
        code=package_sources("shadowing", "figures"),
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
        quantiles=analysis("curve_quantiles"),
    script:
        "../workflow_scripts/shadowing_gather.py"
