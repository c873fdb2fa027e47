# Stage 1: every dataset as 3×32×32 uint8 images in one HDF5 file (method §5).


# Runs on the submitting host under a cluster executor: compute nodes often have no internet for the
# torchvision downloads.
localrules:
    prepare_data,


rule prepare_data:
    output:
        results("data", "{dataset}.h5"),
    log:
        results("logs", "data", "{dataset}.log"),
    benchmark:
        results("benchmarks", "data", "{dataset}.tsv")
    conda:
        ENV
    params:
        entry=dataset_entry,
        download_dir=config["download_dir"],
    script:
        "../workflow_scripts/prepare_data.py"
