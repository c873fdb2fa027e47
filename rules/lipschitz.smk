# Stage 6: Lip(g) of the head (exact ‖W‖₂ for a linear head, LipSDP for a multi-layer one; method §3.3);
# the replicate_* rule for training replicates 2..K.


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


use rule lipschitz as replicate_lipschitz with:
    input:
        trajectories=replicate_dir("trajectories.h5"),
        model=replicate_dir("model.pt"),
        data=os.path.join(RESULTS, "data", "{dataset}.h5"),
        code=package_sources("lipschitz"),
    output:
        replicate_dir("lipschitz.json"),
    log:
        log_path("replicates/{replicate}/lipschitz"),
    benchmark:
        benchmark_path("replicates/{replicate}/lipschitz")
