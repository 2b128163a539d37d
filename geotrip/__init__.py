"""geotrip: the gradient geometry of triplet losses on the unit hypersphere, in JAX.

Layout (each layer builds only on the ones above it):

* geometry      -- :mod:`geotrip._geometry`: normalize, tangent projection, accurate angles
* distances     -- :mod:`geotrip._distances`: the family d = g(theta) and its weights g'
* losses        -- :mod:`geotrip._losses`: hinge and soft-margin triplet losses
* gradients     -- :mod:`geotrip._gradients`: raw/Riemannian gradients, angles, disagreement
* configs       -- :mod:`geotrip._configs`: synthetic configurations (parametric triplets, ...)
* mining, sweeps, search, experiments -- later layers
* figures, cli  -- :mod:`geotrip.figures`, :mod:`geotrip.cli`
"""

from ._geometry import (
    angle,
    normalize,
    pairwise_angles,
    project_tangent,
    random_rotation,
    safe_norm,
    vector_angle,
)
from ._distances import DISTANCES, Distance, distance, make_distance, pairwise_distances
from ._losses import batch_loss, hinge, hinge_slope, triplet_loss
from ._gradients import (
    GRADIENT_ANGLE_KEYS,
    batch_gradient_angle,
    batch_grads,
    descent_disagreement,
    gradient_angles,
    normalize_vjp,
    normalize_vjp_closed_form,
    tangent_direction,
    triplet_grads,
    triplet_grads_closed_form,
)
from ._configs import parametric_triplet, triplet_angles
from ._provenance import provenance, write_provenance

__version__ = "0.1.0"

__all__ = [
    # geometry
    "angle", "normalize", "pairwise_angles", "project_tangent", "random_rotation",
    "safe_norm", "vector_angle",
    # distances
    "DISTANCES", "Distance", "distance", "make_distance", "pairwise_distances",
    # losses
    "batch_loss", "hinge", "hinge_slope", "triplet_loss",
    # gradients
    "GRADIENT_ANGLE_KEYS", "batch_gradient_angle", "batch_grads", "descent_disagreement",
    "gradient_angles", "normalize_vjp", "normalize_vjp_closed_form", "tangent_direction",
    "triplet_grads", "triplet_grads_closed_form",
    # configs
    "parametric_triplet", "triplet_angles",
    # provenance
    "provenance", "write_provenance",
]

# --- configs (more generators), mining, margin matching, sweeps: issue 3 ---
from ._configs import (
    CLUSTER_KINDS, clustered_batch, near_degenerate_pairs, rotated_triplet, sample_polar_angle,
    spherical_cap, uniform_sphere,
)
from ._mining import MINING_STRATEGIES, mine_triplets, num_mined
from ._matching import MATCHING_RULES, active_set_disagreement, match_margin
from ._sweeps import (
    SWEEP_FAMILIES, family_sampler, gradient_angles_closed_form, run_sweep, summarize, sweep,
    triplet_metric,
)

__all__ += [
    "CLUSTER_KINDS", "clustered_batch", "near_degenerate_pairs", "rotated_triplet",
    "sample_polar_angle", "spherical_cap", "uniform_sphere",
    "MINING_STRATEGIES", "mine_triplets", "num_mined",
    "MATCHING_RULES", "active_set_disagreement", "match_margin",
    "SWEEP_FAMILIES", "family_sampler", "gradient_angles_closed_form", "run_sweep", "summarize",
    "sweep", "triplet_metric",
]

# --- counterexample search and certificates: issue 4 ---
from ._search import (  # noqa: E402
    OBJECTIVES, RESTART_FAMILIES, STRUCTURES, Certificate, SearchResult, certify, draw_configurations,
    objective_function, search, simplify, triplet_structure,
)
from ._certificates import (  # noqa: E402
    CertificateError, VerificationResult, certificate_quantities, load_certificate, verify_certificate,
    write_certificate,
)

__all__ += [
    "OBJECTIVES", "RESTART_FAMILIES", "STRUCTURES", "Certificate", "SearchResult", "certify",
    "draw_configurations", "objective_function", "search", "simplify", "triplet_structure",
    "CertificateError", "VerificationResult", "certificate_quantities", "load_certificate",
    "verify_certificate", "write_certificate",
]

# --- training experiments: issue 5 ---
from ._models import cap_last_layer, init_features, init_mlp, mlp_embed, mlp_features
from ._data import class_table, load_digits, make_clusters, sample_pk, stratified_split
from ._metrics import (
    COLLAPSE_COS, COLLAPSE_RANK, active_share, alignment, effective_rank, embedding_metrics,
    is_collapsed, mean_pairwise_cosine, recall_at_1, riemannian_grad_norm, uniformity,
)
from ._experiments import (
    COLLAPSE_PRESETS, TRAINING_METRICS, TRAINING_TASKS, CollapseSweep, TaskData, TrainSetup,
    clopper_pearson_interval, collapse_phase_table, collapse_summary, make_task_data,
    read_collapse_runs, reference_distance, run_collapse_sweep, train_grid, train_runs,
    wilson_interval,
)

__all__ += [
    "cap_last_layer", "init_features", "init_mlp", "mlp_embed", "mlp_features",
    "class_table", "load_digits", "make_clusters", "sample_pk", "stratified_split",
    "COLLAPSE_COS", "COLLAPSE_RANK", "active_share", "alignment", "effective_rank",
    "embedding_metrics", "is_collapsed", "mean_pairwise_cosine", "recall_at_1",
    "riemannian_grad_norm", "uniformity",
    "COLLAPSE_PRESETS", "TRAINING_METRICS", "TRAINING_TASKS", "CollapseSweep", "TaskData",
    "TrainSetup", "clopper_pearson_interval", "collapse_phase_table", "collapse_summary",
    "make_task_data", "read_collapse_runs", "reference_distance", "run_collapse_sweep",
    "train_grid", "train_runs", "wilson_interval",
]
