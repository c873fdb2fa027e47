# Stage 7: one constants.json per run: g-expansive, g-shadowing, Lip, and the Theorem 1 bound.


rule constants:
    input:
        trajectories=source_of("trajectories.h5"),
        pairs=run_file("pairs.h5"),
        shadowing=run_file("shadowing.h5"),
        lipschitz=source_of("lipschitz.json"),
        code=package_sources("constants", "readings"),
    output:
        run_file("constants.json"),
    log:
        log_file("constants"),
    benchmark:
        benchmark_file("constants")
    conda:
        ENV
    params:
        run=run_params,
    script:
        "../workflow_scripts/constants.py"
