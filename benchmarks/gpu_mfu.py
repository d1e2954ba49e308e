"""The GPU bench's core figures alone (for a short device window): bf16/TF32 matmul peaks and the training speed
of the d=768 GPT and the baby GPT, eager and compiled; JSON rewritten after every figure so a timeout keeps them."""

import json
import os
import sys

import torch

from tinylm.bench import BABY_GPT, GPU_GPT, datasheet_bf16_tflops, matmul_peak, train_speed
from tinylm.device import configure, pick_device
from tinylm.models.heads import FullHead

out_path = os.path.join(os.environ.get("OUT", "."), "gpu_mfu.json")
dev = pick_device(sys.argv[1] if len(sys.argv) > 1 else "cuda")
configure(dev)
name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
report = {"device": name, "torch": torch.__version__, "datasheet_bf16_tflops": datasheet_bf16_tflops(name), "rows": []}


def save() -> None:
    with open(out_path, "w") as f:
        json.dump(report, f, indent=1)


report["matmul_bf16"] = matmul_peak(dev, 3, torch.bfloat16)
report["matmul_tf32"] = matmul_peak(dev, 3)
save()
peak = report["matmul_bf16"]["peak_gflops"]
# Knobs for a short window: MFU_CASES (d768,baby), MFU_COMPILED (0,1), MFU_BATCHES (the cases' own batch if unset),
# MFU_PADS (the full head's CUDA output padding, FullHead.cuda_multiple: 1 is the plain matmul; the default's if unset)
cases = [c for c in (("d768", "wikitext2", GPU_GPT), ("baby", "tinyshakespeare", BABY_GPT))
         if c[0] in os.environ.get("MFU_CASES", "d768,baby").split(",")]
compiled_modes = [m == "1" for m in os.environ.get("MFU_COMPILED", "0,1").split(",")]
batches = [int(b) for b in os.environ.get("MFU_BATCHES", "").split(",") if b] or [None]
pads = [int(m) for m in os.environ.get("MFU_PADS", "").split(",") if m] or [FullHead.cuda_multiple]
runs = [(case, dataset, base, batch, compiled, pad) for case, dataset, base in cases for batch in batches
        for compiled in compiled_modes for pad in pads]
for case, dataset, base, batch, compiled, pad in runs:
    sets = base + ([f"train.batch_size={batch}"] if batch else [])
    FullHead.cuda_multiple = pad
    try:
        row = train_speed("transformer", dataset, "bf16", 10, 3, str(dev), sets, compiled)
        row["mfu_vs_measured_bf16"] = row["achieved_gflops"] / peak
        if report["datasheet_bf16_tflops"]:
            row["mfu_vs_datasheet_bf16"] = row["achieved_gflops"] / (report["datasheet_bf16_tflops"] * 1e3)
    except Exception as e:  # noqa: BLE001
        row = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    row["case"], row["head_pad_multiple"] = case, pad
    report["rows"].append(row)
    save()
    print(case, batch, compiled, pad, {k: row.get(k) for k in ("achieved_gflops", "mfu_vs_measured_bf16", "error")},
          flush=True)
