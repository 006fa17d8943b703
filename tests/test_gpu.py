"""The CUDA path: data resident on the GPU, same simulated times and (to rounding) the same losses as on the CPU
(run with -m gpu on a CUDA machine)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from simulator.config.scenario import load_scenario
from simulator.engine.simulation import Simulation

SCENARIO = """
name: gpu_check
seed: 3
compute: {compute}
dataset: {{name: synthetic, synthetic: {{train_size: 400, test_size: 100, image_size: 16}}}}
model: {{width: 8}}
training: {{rounds: 2, local_steps: 3, batch_size: 16}}
strategy: {{name: averaging}}
clients:
  - {{device: rpi4, link: wifi4, cut: 2, count: 2}}
  - {{device: jetson_nano, link: wifi6, cut: 4}}
"""


@pytest.mark.gpu
def test_cuda_run_keeps_data_on_gpu_and_matches_cpu_timing(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.fail("the gpu marker was selected but torch sees no CUDA device")
    results, losses = {}, {}
    for compute in ("cpu", "cuda"):
        path = tmp_path / f"{compute}.yaml"
        path.write_text(SCENARIO.format(compute=compute))
        sim = Simulation(load_scenario(path))
        if compute == "cuda":
            assert sim.learning.train_x.is_cuda and sim.learning.trainers[0].tensors()[0].is_cuda
        sim.run()
        results[compute] = [r.sim_time_s for r in sim.records]
        losses[compute] = [v for r in sim.records for d in (r.exit_loss, r.server_loss) for _, v in sorted(d.items())]
    # Simulated time depends on the cost model only, never on where the real steps ran.
    assert results["cuda"] == pytest.approx(results["cpu"], rel=1e-12)
    # The same training on either device, up to float rounding (GPU kernels sum in other orders).
    assert len(losses["cpu"]) == 12 and losses["cuda"] == pytest.approx(losses["cpu"], rel=1e-3)
