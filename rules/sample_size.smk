# Stage 7b: how much the constants depend on the sample (method §3.6): e and every Sh estimate on B
# class-stratified random subsets per size of a geometric grid up to N, exactly with the pairwise and
# shadowing kernels; sample_size.csv (one row per subset), sample_size.json (medians, 5-95 % bands, slopes,
# the reference size: read by Table 2 and the readings table) and a log-log figure. Once per (dataset,
# model), per extra reading and per training replicate 2..K.


rule sample_size:
    input:
        trajectories=run_dir("trajectories.h5"),
        # The whole test set (the largest size) must give exactly these constants: the stage checks it.
        constants=run_dir("constants.json"),
        code=package_sources("sample_size", "distances", "shadowing", "readings", "figures"),
    output:
        csv=run_dir("sample_size.csv"),
        json=run_dir("sample_size.json"),
        png=report(
            run_dir("sample_size.png"),
            category="Sample size",
            subcategory="{dataset} / {model}",
            caption="../report/sample_size.rst",
        ),
    log:
        log_path("sample_size"),
    benchmark:
        benchmark_path("sample_size")
    conda:
        ENV
    params:
        reading=reading_params,
        name=reading_name,
        settings=sample_size_params(),
        quantiles=analysis("curve_quantiles"),
        chunk=analysis("chunk"),
    script:
        "../workflow_scripts/sample_size.py"


use rule sample_size as reading_sample_size with:
    input:
        # a reading with `head: probes` reads the probes' trajectories (rules/common.smk reading_source)
        trajectories=reading_source("trajectories.h5"),
        constants=reading_dir("constants.json"),
        code=package_sources("sample_size", "distances", "shadowing", "readings", "figures"),
    output:
        csv=reading_dir("sample_size.csv"),
        json=reading_dir("sample_size.json"),
        png=report(
            reading_dir("sample_size.png"),
            category="Readings",
            subcategory="{dataset} / {model} / {reading}",
            caption="../report/sample_size.rst",
        ),
    log:
        log_path("readings/{reading}/sample_size"),
    benchmark:
        benchmark_path("readings/{reading}/sample_size")


use rule sample_size as replicate_sample_size with:
    input:
        trajectories=replicate_dir("trajectories.h5"),
        constants=replicate_dir("constants.json"),
        code=package_sources("sample_size", "distances", "shadowing", "readings", "figures"),
    output:
        csv=replicate_dir("sample_size.csv"),
        json=replicate_dir("sample_size.json"),
        png=replicate_dir("sample_size.png"),
    log:
        log_path("replicates/{replicate}/sample_size"),
    benchmark:
        benchmark_path("replicates/{replicate}/sample_size")
