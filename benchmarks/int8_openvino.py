"""INT8 against FP32 in OpenVINO beside ONNX Runtime: is another runtime's INT8 faster?

ONNX Runtime runs the quickstart's INT8 models at 0.7-0.8x of their FP32 twins (the
`compression` section: its call and per-node overhead outweigh the faster arithmetic). This
script times the same ONNX files (FP32 `model.onnx` and QDQ `model_int8.onnx` of every finished
model of a run) in ONNX Runtime and in OpenVINO's CPU plugin, which folds QDQ pairs into its
int8 oneDNN convolutions, interleaved, at batch 1; then the same for two mbconv_imagenet
architectures at 224x224 (random weights, calibrated on random images: speed only).

OpenVINO is not a dependency of the package (`pip install openvino` to run this).

    python benchmarks/int8_openvino.py --run runs/quickstart --write
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, update_section  # noqa: E402


def _runners(fp32: Path, int8: Path, x, threads: int) -> dict:
    import openvino as ov

    from nas.export import OnnxModule

    core = ov.Core()
    runners = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        session = OnnxModule(path, threads=threads)
        compiled = core.compile_model(
            str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        )
        request = compiled.create_infer_request()
        runners[f"ort {name}"] = lambda s=session: s.run_numpy(x)
        runners[f"ov {name}"] = lambda r=request: r.infer([x])
    return runners


def _row(model: str, runners: dict, config) -> dict:
    from nas.compress import summarize, time_interleaved

    med = {k: summarize(v)[0] * 1e3 for k, v in time_interleaved(runners, config).items()}
    return {
        "model": model,
        "ORT fp32 us": med["ort fp32"],
        "ORT int8 us": med["ort int8"],
        "ORT int8 speedup": med["ort fp32"] / med["ort int8"],
        "OpenVINO fp32 us": med["ov fp32"],
        "OpenVINO int8 us": med["ov int8"],
        "OpenVINO int8 speedup": med["ov fp32"] / med["ov int8"],
        "OpenVINO int8 vs ORT fp32": med["ort fp32"] / med["ov int8"],
    }


def quickstart_rows(run: Path, threads: int) -> list[dict]:
    import onnxruntime as ort

    from nas.compress import LatencyConfig

    config = LatencyConfig(threads=threads, warmup=50, repeats=600, rounds=6)
    rows = []
    for int8 in sorted((run / "final").glob("*/model_int8.onnx")):
        shape = ort.InferenceSession(str(int8)).get_inputs()[0].shape  # ['batch', C, H, W]
        x = torch.randn(1, *shape[1:], generator=torch.Generator().manual_seed(0)).numpy()
        runners = _runners(int8.parent / "model.onnx", int8, x, threads)
        rows.append(_row(f"quickstart {int8.parent.name}", runners, config))
    return rows


def compute_bound_rows(threads: int) -> list[dict]:
    from nas.compress import LatencyConfig, quantize_int8
    from nas.export import export_onnx
    from nas.space import load_space

    space = load_space("mbconv_imagenet")
    config = LatencyConfig(threads=threads, warmup=5, repeats=60, rounds=3)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (0, 1):
            model = space.build(space.random(seed), seed=0).eval()
            images = torch.randn(
                16, *space.input_shape, generator=torch.Generator().manual_seed(seed)
            )
            fp32, int8 = Path(tmp) / f"m{seed}.onnx", Path(tmp) / f"m{seed}_int8.onnx"
            export_onnx(model, images[:2], fp32, check=images[:2], atol=1e-3)
            export_onnx(quantize_int8(model, images, batch_size=8), images[:2], int8, atol=None)
            runners = _runners(fp32, int8, images[:1].numpy(), threads)
            rows.append(_row(f"mbconv_imagenet seed {seed} (224x224)", runners, config))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished run (nas run) with final/")
    parser.add_argument("--threads", type=int, default=1, help="threads of both runtimes")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    try:
        import openvino
    except ImportError:
        sys.exit("int8_openvino.py: OpenVINO is not installed; pip install openvino")
    if not list(Path(args.run).glob("final/*/model_int8.onnx")):
        sys.exit(f"int8_openvino.py: {args.run}: no final/*/model_int8.onnx; finish a run first")
    frame = pd.DataFrame(
        quickstart_rows(Path(args.run), args.threads) + compute_bound_rows(args.threads)
    )
    text = "\n".join(
        [
            "### INT8 in OpenVINO beside ONNX Runtime (the same ONNX files, batch 1)",
            "",
            f"Command: `python benchmarks/int8_openvino.py --run RUN --threads {args.threads} "
            "--write` (RUN: a finished `nas run experiments/quickstart.yaml`)  ",
            f"Machine: {machine()}, openvino {openvino.__version__.split('-')[0]}; {args.threads} "
            f"thread{'s' * (args.threads != 1)} in both runtimes, median of interleaved calls "
            "(600 in 6 rounds for the quickstart's models, 60 in 3 for the 224x224 ones)",
            "",
            frame.to_markdown(index=False, floatfmt=".3g"),
        ]
    )
    print(text)
    if args.write:
        update_section("int8-openvino", text)


if __name__ == "__main__":
    main()
