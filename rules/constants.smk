# Stage 7: one constants.json per (dataset, model): g-expansive, g-shadowing, Lip, and the Theorem 1 bound.


rule constants:
    input:
        trajectories=run_dir("trajectories.h5"),
        pairs=run_dir("pairs.h5"),
        shadowing=run_dir("shadowing.h5"),
        lipschitz=run_dir("lipschitz.json"),
        code=package_sources("constants"),
    output:
        run_dir("constants.json"),
    log:
        log_path("constants"),
    benchmark:
        benchmark_path("constants")
    conda:
        ENV
    script:
        "../workflow_scripts/constants.py"
