# Stage 5: greedy pseudo-orbits of one run, their shadowing errors (sharded over orbits), and every
# g-shadowing estimate: best tracing, the independent pairing and the curve (method §3.2, §3.4).


rule shadowing_shard:
    input:
        trajectories=source_of("trajectories.h5"),
        pairs=run_file("pairs.h5"),
        code=package_sources("shadowing", "distances", "readings"),
    output:
        temp(results("{run}", "shards", "shadowing_{scatteritem}.h5")),
    log:
        log_file("shadowing_{scatteritem}"),
    benchmark:
        benchmark_file("shadowing_{scatteritem}")
    conda:
        ENV
    # No GPU: the exact min-max kernel runs on the CPU (numba, early abandoning), on the job's threads
    # (workflow_scripts/shadowing_shard.py; one, the shards being the parallelism; --set-threads raises it).
    threads: 1
    params:
        run=run_params,
        chunk=analysis("chunk"),
    script:
        "../workflow_scripts/shadowing_shard.py"


rule shadowing_gather:
    input:
        shards=gather.shards(shard_file("shadowing")),
        code=package_sources("shadowing", "figures", "readings"),
    output:
        h5=run_file("shadowing.h5"),
        curve=run_report(run_file("shadowing_curve.csv"), "g-shadowing", "shadowing_curve_table.rst"),
        plot=run_report(run_file("shadowing_curve.png"), "g-shadowing", "shadowing_curve.rst"),
    log:
        log_file("shadowing_gather"),
    benchmark:
        benchmark_file("shadowing_gather")
    conda:
        ENV
    params:
        run=run_params,
        quantiles=analysis("curve_quantiles"),
    script:
        "../workflow_scripts/shadowing_gather.py"
