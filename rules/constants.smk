# Stage 7: one constants.json per (dataset, model), per extra reading and per training replicate 2..K:
# g-expansive, g-shadowing, Lip, and the Theorem 1 bound.


rule constants:
    input:
        trajectories=run_dir("trajectories.h5"),
        pairs=run_dir("pairs.h5"),
        shadowing=run_dir("shadowing.h5"),
        lipschitz=run_dir("lipschitz.json"),
        code=package_sources("constants", "readings"),
    output:
        run_dir("constants.json"),
    log:
        log_path("constants"),
    benchmark:
        benchmark_path("constants")
    conda:
        ENV
    params:
        reading=reading_params,
        name=reading_name,
    script:
        "../workflow_scripts/constants.py"


use rule constants as reading_constants with:
    input:
        trajectories=reading_source("trajectories.h5"),
        pairs=reading_dir("pairs.h5"),
        shadowing=reading_dir("shadowing.h5"),
        lipschitz=reading_source("lipschitz.json"),
        code=package_sources("constants", "readings"),
    output:
        reading_dir("constants.json"),
    log:
        log_path("readings/{reading}/constants"),
    benchmark:
        benchmark_path("readings/{reading}/constants")


use rule constants as replicate_constants with:
    input:
        trajectories=replicate_dir("trajectories.h5"),
        pairs=replicate_dir("pairs.h5"),
        shadowing=replicate_dir("shadowing.h5"),
        lipschitz=replicate_dir("lipschitz.json"),
        code=package_sources("constants", "readings"),
    output:
        replicate_dir("constants.json"),
    log:
        log_path("replicates/{replicate}/constants"),
    benchmark:
        benchmark_path("replicates/{replicate}/constants")
