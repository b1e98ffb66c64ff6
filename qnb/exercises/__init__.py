"""Exercise checks: quiet praise for a right answer, a diagnosis for a wrong one.

One module per notebook, named after it (`nb02_per_channel_weights` grades
notebooks/02_per_channel_weights.ipynb), the shared machinery in `grading` (`ExerciseError`,
the pass line, the "not answered yet" guard, tolerant comparisons), and `REGISTRY`: one entry per
graded exercise (id, notebook, points, check, core or not, seeded or not), held to the notebooks'
nbgrader cells by a unit test. Every check is importable from here, as the notebooks do
(`from qnb.exercises import check_quantize`).

What a check compares with. A check never reads the notebook's worked solution: it recomputes the
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
from qnb.exercises.nb01_affine_quantization import check_db_per_bit, check_qparams, check_quantize
from qnb.exercises.nb02_per_channel_weights import (
    check_channel_scales,
    check_fake_quantize_per_channel,
    check_worst_layer,
)
from qnb.exercises.nb03_activation_calibration import (
    check_best_clip,
    check_moving_average_minmax,
    check_percentile_clip,
)
from qnb.exercises.nb04_integer_arithmetic import check_bn_fold, check_cross_term, check_requantize
from qnb.exercises.nb05_static_ptq import (
    check_float_functional,
    check_float_modules,
    check_static_ptq,
)
from qnb.exercises.nb06_dynamic_and_weight_only import (
    check_dynamic_qparams,
    check_group_quantize,
    check_lstm_share,
)
from qnb.exercises.nb07_advanced_ptq import check_cle_scales, check_flip_count
from qnb.exercises.nb08_quantization_aware_training import check_ste_function, check_ste_gradient
from qnb.exercises.nb09_mixed_precision import (
    check_allocation,
    check_model_size,
    check_pareto_points,
)
from qnb.exercises.nb10_cpu_deployment import check_amdahl, check_paired_speedup, check_throughput
from qnb.exercises.nb11_other_runtimes import check_input_qparams, check_quantize_linear
from qnb.exercises.nb12_llm_weight_quantization import (
    check_awq_scales,
    check_bits_per_weight,
    check_gptq_step,
)
from qnb.exercises.nb13_number_formats import check_e4m3_encoder, check_mx_block_scale
from qnb.exercises.nb14_llm_outliers_and_gguf import check_awq_search, check_q4_0_block
from qnb.exercises.nb15_experiment_sweeps import check_grid, check_shard, check_sweep_gap
from qnb.exercises.registry import BY_ID, REGISTRY, GradedExercise

__all__ = [
    "BY_ID",
    "REGISTRY",
    "ExerciseError",
    "GradedExercise",
    "check_allocation",
    "check_amdahl",
    "check_awq_scales",
    "check_awq_search",
    "check_best_clip",
    "check_bits_per_weight",
    "check_bn_fold",
    "check_channel_scales",
    "check_cle_scales",
    "check_cross_term",
    "check_db_per_bit",
    "check_dynamic_qparams",
    "check_e4m3_encoder",
    "check_fake_quantize_per_channel",
    "check_flip_count",
    "check_float_functional",
    "check_float_modules",
    "check_gptq_step",
    "check_grid",
    "check_group_quantize",
    "check_input_qparams",
    "check_lstm_share",
    "check_model_size",
    "check_moving_average_minmax",
    "check_mx_block_scale",
    "check_paired_speedup",
    "check_pareto_points",
    "check_percentile_clip",
    "check_q4_0_block",
    "check_qparams",
    "check_quantize",
    "check_quantize_linear",
    "check_requantize",
    "check_shard",
    "check_static_ptq",
    "check_ste_function",
    "check_ste_gradient",
    "check_sweep_gap",
    "check_throughput",
    "check_worst_layer",
]
