# Stage 1: every dataset as 3×32×32 uint8 images in one HDF5 file (method §5).


# Runs on the submitting host under a cluster executor: compute nodes often have no internet for the
# torchvision downloads.
localrules:
    prepare_data,


# The user's data files are tracked by content, not path (docs/reliability.md): `content` is their digest,
# `entry` leaves out their location, and the job reads the location (`path`, `download_dir`) from the
# config, so moving or copying the data reruns nothing while new content reruns everything downstream.
rule prepare_data:
    output:
        data=results("data", "{dataset}.h5"),
        record=results("data", "{dataset}.source.json"),
    log:
        results("logs", "data", "{dataset}.log"),
    benchmark:
        results("benchmarks", "data", "{dataset}.tsv")
    conda:
        ENV
    params:
        entry=data_entry,
        content=source_content,
    script:
        "../workflow_scripts/prepare_data.py"
