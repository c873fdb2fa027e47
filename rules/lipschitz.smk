# Stage 6: Lip(g) of the head (exact ‖W‖₂ for a linear head, LipSDP for a multi-layer one; method §3.3).


rule lipschitz:
    input:
        trajectories=run_dir("trajectories.h5"),
        model=run_dir("model.pt"),
        data=os.path.join(RESULTS, "data", "{dataset}.h5"),
        code=package_sources("lipschitz"),
    output:
        run_dir("lipschitz.json"),
    log:
        log_path("lipschitz"),
    benchmark:
        benchmark_path("lipschitz")
    conda:
        ENV
    params:
        solver=config["lipschitz"]["solver"],
        eps=config["lipschitz"]["eps"],
        device=analysis("device"),
    script:
        "../workflow_scripts/lipschitz.py"
