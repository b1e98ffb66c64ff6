"""Exercise graders (`grade_*`): quiet praise for a right answer, a diagnosis for a wrong one.

A notebook's nbgrader "check" cell calls its exercise's grader. The prefix keeps the three kinds
of function apart: `qnb.checks.check_*` validate arguments, `grade_*` grade exercises, and
`qnb.bench.deployable` refuses models that cannot be timed.

One module per notebook, named after it (`nb02_per_channel_weights` grades
notebooks/02_per_channel_weights.ipynb), the shared machinery in `grading` (`ExerciseError`,
the pass line, the "not answered yet" guard, tolerant comparisons), and `REGISTRY`: one entry per
graded exercise (id, notebook, points, grader, core or not, seeded or not), held to the notebooks'
nbgrader cells by a unit test. Every grader is importable from here, as the notebooks do
(`from qnb.exercises import grade_quantize`).

What a grader compares with. A grader never reads the notebook's worked solution: it recomputes the
answer, and says which usual mistake a wrong answer matches. Most recompute with plain numpy or
Python, or with PyTorch's own kernels and observers (`torch.quantize_per_tensor`,
`fake_quantize_per_channel_affine`, torch.ao's observers and eager prepare/convert,
`fuse_conv_bn_weights`, the float8 casts). Some call the workbook's own code, which is tested
against those references in its own unit tests: 02.2 `qnb.simulate` and `qnb.mixed`, 05.2
`qnb.ptq`, 06.2 `qnb.dynamic`, 09.1 and 09.2 `qnb.mixed`, 11.1 `qnb.runtimes` (ONNX Runtime's
QuantizeLinear), 15.2 `qnb.sweep`; 11.2 reads the ONNX file with `onnx`, 15.1 the results table
with pandas.

Core exercises (3 points, the student writes the core of the technique) take `seed`: seed 0 is
the visible check in the notebook, other seeds draw other inputs (and where it matters other bit
widths or constants), so that a grader can check the student's function on held-out cases and an
answer tuned to the visible case does not pass.
"""

from qnb.exercises.grading import ExerciseError
from qnb.exercises.nb01_affine_quantization import grade_db_per_bit, grade_qparams, grade_quantize
from qnb.exercises.nb02_per_channel_weights import (
    grade_channel_scales,
    grade_fake_quantize_per_channel,
    grade_worst_layer,
)
from qnb.exercises.nb03_activation_calibration import (
    grade_best_clip,
    grade_moving_average_minmax,
    grade_percentile_clip,
)
from qnb.exercises.nb04_integer_arithmetic import grade_bn_fold, grade_cross_term, grade_requantize
from qnb.exercises.nb05_static_ptq import (
    grade_float_functional,
    grade_float_modules,
    grade_static_ptq,
)
from qnb.exercises.nb06_dynamic_and_weight_only import (
    grade_dynamic_qparams,
    grade_group_quantize,
    grade_lstm_share,
)
from qnb.exercises.nb07_advanced_ptq import grade_cle_scales, grade_flip_count
from qnb.exercises.nb08_quantization_aware_training import grade_ste_function, grade_ste_gradient
from qnb.exercises.nb09_mixed_precision import (
    grade_allocation,
    grade_model_size,
    grade_pareto_points,
)
from qnb.exercises.nb10_cpu_deployment import grade_amdahl, grade_paired_speedup, grade_throughput
from qnb.exercises.nb11_other_runtimes import grade_input_qparams, grade_quantize_linear
from qnb.exercises.nb12_llm_weight_quantization import (
    grade_awq_scales,
    grade_bits_per_weight,
    grade_gptq_step,
)
from qnb.exercises.nb13_number_formats import grade_e4m3_encoder, grade_mx_block_scale
from qnb.exercises.nb14_llm_outliers_and_gguf import grade_awq_search, grade_q4_0_block
from qnb.exercises.nb15_experiment_sweeps import grade_grid, grade_shard, grade_sweep_gap
from qnb.exercises.registry import BY_ID, REGISTRY, GradedExercise

__all__ = [
    "BY_ID",
    "REGISTRY",
    "ExerciseError",
    "GradedExercise",
    "grade_allocation",
    "grade_amdahl",
    "grade_awq_scales",
    "grade_awq_search",
    "grade_best_clip",
    "grade_bits_per_weight",
    "grade_bn_fold",
    "grade_channel_scales",
    "grade_cle_scales",
    "grade_cross_term",
    "grade_db_per_bit",
    "grade_dynamic_qparams",
    "grade_e4m3_encoder",
    "grade_fake_quantize_per_channel",
    "grade_flip_count",
    "grade_float_functional",
    "grade_float_modules",
    "grade_gptq_step",
    "grade_grid",
    "grade_group_quantize",
    "grade_input_qparams",
    "grade_lstm_share",
    "grade_model_size",
    "grade_moving_average_minmax",
    "grade_mx_block_scale",
    "grade_paired_speedup",
    "grade_pareto_points",
    "grade_percentile_clip",
    "grade_q4_0_block",
    "grade_qparams",
    "grade_quantize",
    "grade_quantize_linear",
    "grade_requantize",
    "grade_shard",
    "grade_static_ptq",
    "grade_ste_function",
    "grade_ste_gradient",
    "grade_sweep_gap",
    "grade_throughput",
    "grade_worst_layer",
]
