# Stage 6: Lip(g) of the head of one trained network (exact ‖W‖₂ for a linear head, LipSDP for a
# multi-layer one; method §3.3).


rule lipschitz:
    input:
        trajectories=trained_file("trajectories.h5"),
        model=trained_file("model.pt"),
        data=dataset_file,
        code=package_sources("lipschitz"),
    output:
        trained_file("lipschitz.json"),
    log:
        log_file("lipschitz", "trained"),
    benchmark:
        benchmark_file("lipschitz", "trained")
    conda:
        ENV
    params:
        solver=config["lipschitz"]["solver"],
        eps=config["lipschitz"]["eps"],
        device=analysis("device"),
    script:
        "../workflow_scripts/lipschitz.py"
