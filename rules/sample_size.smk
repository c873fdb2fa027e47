# Stage 7b: how much the constants of one run depend on the sample (method §3.6): e and every Sh estimate
# on B class-stratified random subsets per size of a geometric grid up to N, exactly with the pairwise and
# shadowing kernels; sample_size.csv (one row per subset), sample_size.json (medians, 5-95 % bands, slopes,
# the reference size: read by Table 2 and the readings table) and a log-log figure.


rule sample_size:
    input:
        trajectories=source_of("trajectories.h5"),
        # The whole test set's row (the largest size) is read from it; the stage rechecks its pair and orbit.
        constants=run_file("constants.json"),
        # The pairwise pass's close pairs: each subset's e is the first of them inside it.
        pairs=run_file("pairs.h5"),
        code=package_sources("sample_size", "distances", "shadowing", "readings", "figures"),
    output:
        csv=run_file("sample_size.csv"),
        json=run_file("sample_size.json"),
        png=run_report(run_file("sample_size.png"), "Sample size", "sample_size.rst"),
    log:
        log_file("sample_size"),
    benchmark:
        benchmark_file("sample_size")
    conda:
        ENV
    # The subsets run side by side, one numba thread each, on the job's threads
    # (workflow_scripts/sample_size.py; --set-threads sample_size=N); the table does not depend on them.
    threads: 1
    params:
        run=run_params,
        settings=sample_size_params(),
        quantiles=analysis("curve_quantiles"),
        chunk=analysis("chunk"),
    script:
        "../workflow_scripts/sample_size.py"
