"""The exercises, one entry per graded exercise of the notebooks: which check grades it, its
points, and whether it is a core exercise with held-out variants.

The notebooks are the truth; tests/unit/test_exercises_registry.py reads their nbgrader cells and
holds this table to them (ids, points, the check each check cell calls).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from qnb.exercises import nb01_affine_quantization as nb01
from qnb.exercises import nb02_per_channel_weights as nb02
from qnb.exercises import nb03_activation_calibration as nb03
from qnb.exercises import nb04_integer_arithmetic as nb04
from qnb.exercises import nb05_static_ptq as nb05
from qnb.exercises import nb06_dynamic_and_weight_only as nb06
from qnb.exercises import nb07_advanced_ptq as nb07
from qnb.exercises import nb08_quantization_aware_training as nb08
from qnb.exercises import nb09_mixed_precision as nb09
from qnb.exercises import nb10_cpu_deployment as nb10
from qnb.exercises import nb11_other_runtimes as nb11
from qnb.exercises import nb12_llm_weight_quantization as nb12
from qnb.exercises import nb13_number_formats as nb13
from qnb.exercises import nb14_llm_outliers_and_gguf as nb14
from qnb.exercises import nb15_experiment_sweeps as nb15

CORE_POINTS = 3  # 1: a number read off a table, 2: a few lines of reasoning, 3: the core itself


@dataclass(frozen=True)
class GradedExercise:
    """One graded exercise: "02.3" in notebooks/<notebook>, worth `points`, graded by `grader`."""

    id: str
    notebook: str
    points: int
    grader: Callable[..., None]

    @property
    def core(self) -> bool:
        """The student writes the core of the technique (the notebook's 3-point exercise)."""
        return self.points == CORE_POINTS

    @property
    def seeded(self) -> bool:
        """The grader takes `seed`: other seeds draw other inputs, the held-out variants that
        nbgrader's hidden tests (and a grader) run; seed 0 is the visible check."""
        return "seed" in inspect.signature(self.grader).parameters


def _notebook(notebook: str, *rows: tuple[str, int, Callable[..., None]]) -> list:
    """The entries of one notebook: (id, points, grader) each."""
    return [GradedExercise(k, notebook, points, grader) for k, points, grader in rows]


REGISTRY: tuple[GradedExercise, ...] = tuple(
    _notebook("01_affine_quantization.ipynb",
             ("01.1", 1, nb01.grade_qparams),
             ("01.2", 3, nb01.grade_quantize),
             ("01.3", 1, nb01.grade_db_per_bit))
    + _notebook("02_per_channel_weights.ipynb",
               ("02.1", 2, nb02.grade_channel_scales),
               ("02.2", 1, nb02.grade_worst_layer),
               ("02.3", 3, nb02.grade_fake_quantize_per_channel))
    + _notebook("03_activation_calibration.ipynb",
               ("03.1", 1, nb03.grade_percentile_clip),
               ("03.2", 2, nb03.grade_best_clip),
               ("03.3", 3, nb03.grade_moving_average_minmax))
    + _notebook("04_integer_arithmetic.ipynb",
               ("04.1", 3, nb04.grade_requantize),
               ("04.2", 3, nb04.grade_cross_term),
               ("04.3", 3, nb04.grade_bn_fold))
    + _notebook("05_static_ptq.ipynb",
               ("05.1", 1, nb05.grade_float_modules),
               ("05.2", 2, nb05.grade_float_functional),
               ("05.3", 3, nb05.grade_static_ptq))
    + _notebook("06_dynamic_and_weight_only.ipynb",
               ("06.1", 1, nb06.grade_lstm_share),
               ("06.2", 2, nb06.grade_dynamic_qparams),
               ("06.3", 3, nb06.grade_group_quantize))
    + _notebook("07_advanced_ptq.ipynb",
               ("07.1", 3, nb07.grade_cle_scales),
               ("07.2", 1, nb07.grade_flip_count))
    + _notebook("08_quantization_aware_training.ipynb",
               ("08.1", 2, nb08.grade_ste_gradient),
               ("08.2", 3, nb08.grade_ste_function))
    + _notebook("09_mixed_precision.ipynb",
               ("09.1", 2, nb09.grade_model_size),
               ("09.2", 2, nb09.grade_pareto_points),
               ("09.3", 3, nb09.grade_allocation))
    + _notebook("10_cpu_deployment.ipynb",
               ("10.1", 1, nb10.grade_throughput),
               ("10.2", 1, nb10.grade_amdahl),
               ("10.3", 3, nb10.grade_paired_speedup))
    + _notebook("11_other_runtimes.ipynb",
               ("11.1", 3, nb11.grade_quantize_linear),
               ("11.2", 1, nb11.grade_input_qparams))
    + _notebook("12_llm_weight_quantization.ipynb",
               ("12.1", 1, nb12.grade_bits_per_weight),
               ("12.2", 3, nb12.grade_gptq_step),
               ("12.3", 2, nb12.grade_awq_scales))
    + _notebook("13_number_formats.ipynb",
               ("13.1", 3, nb13.grade_e4m3_encoder),
               ("13.2", 2, nb13.grade_mx_block_scale))
    + _notebook("14_llm_outliers_and_gguf.ipynb",
               ("14.1", 3, nb14.grade_q4_0_block),
               ("14.2", 2, nb14.grade_awq_search))
    + _notebook("15_experiment_sweeps.ipynb",
               ("15.1", 1, nb15.grade_sweep_gap),
               ("15.2", 1, nb15.grade_shard),
               ("15.3", 3, nb15.grade_grid))
)  # fmt: skip

BY_ID = {e.id: e for e in REGISTRY}
