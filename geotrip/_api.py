"""The public API of geotrip, in one table: the single source of truth.

``API[subpackage][private module]`` lists the names that ``geotrip.<subpackage>``
re-exports from ``geotrip.<subpackage>.<private module>``. The top-level package
re-exports every one of them lazily (PEP 562), so ``import geotrip`` loads no JAX until
a name is used, and ``geotrip.__all__`` is generated from this table. Each
subpackage's ``__init__`` imports its names explicitly (``from ._x import f as f``);
``tests/test_api.py`` checks that the two agree. This module imports nothing.
"""

API: dict[str, dict[str, tuple[str, ...]]] = {
    "core": {
        "_geometry": (
            "angle",
            "normalize",
            "pairwise_angles",
            "project_tangent",
            "random_rotation",
            "safe_norm",
            "vector_angle",
        ),
        "_distances": ("DISTANCES", "Distance", "distance", "make_distance", "pairwise_distances"),
        "_losses": ("batch_loss", "hinge", "hinge_slope", "triplet_loss"),
        "_gradients": (
            "GRADIENT_ANGLE_KEYS",
            "batch_gradient_angle",
            "batch_grads",
            "descent_disagreement",
            "gradient_angles",
            "normalize_vjp",
            "normalize_vjp_closed_form",
            "tangent_direction",
            "triplet_grads",
            "triplet_grads_closed_form",
        ),
        "_samplers": (
            "CLUSTER_KINDS",
            "clustered_batch",
            "near_degenerate_pairs",
            "parametric_triplet",
            "rotated_triplet",
            "sample_polar_angle",
            "spherical_cap",
            "triplet_angles",
            "uniform_sphere",
        ),
        "_mining": ("MINING_STRATEGIES", "mine_triplets", "num_mined"),
    },
    "sweeps": {
        "_matching": ("MATCHING_RULES", "active_set_disagreement", "match_margin"),
        "_closed_form": ("gradient_angles_closed_form",),
        "_engine": ("sweep", "sweep_chunks"),
        "_families": ("SWEEP_FAMILIES", "family_sampler", "triplet_metric"),
        "_summaries": ("run_sweep", "summarize"),
    },
    "counterexamples": {
        "_objectives": (
            "ACTIVE_MODES",
            "OBJECTIVES",
            "STRUCTURES",
            "objective_function",
            "triplet_structure",
        ),
        "_optimizer": ("RESTART_FAMILIES", "SearchResult", "draw_configurations", "search"),
        "_simplify": ("simplify",),
        "_certify": ("Certificate", "certify"),
        "_bounds": ("monotone_angle_bounds", "one_triplet_bound", "one_triplet_table"),
        "_format": (
            "CERTIFICATE_FORMAT",
            "CertificateError",
            "format_decimal_points",
            "load_certificate",
            "write_certificate",
        ),
        "certificates": ("VerificationResult", "certificate_quantities", "verify_certificate"),
    },
    "train": {
        "_models": ("cap_last_layer", "init_features", "init_mlp", "mlp_embed", "mlp_features"),
        "_data": ("class_table", "load_digits", "make_clusters", "sample_pk", "stratified_split"),
        "_metrics": (
            "COLLAPSE_COS",
            "COLLAPSE_RANK",
            "active_share",
            "alignment",
            "effective_rank",
            "embedding_metrics",
            "is_collapsed",
            "mean_pairwise_cosine",
            "recall_at_1",
            "riemannian_grad_norm",
            "uniformity",
        ),
        "_tasks": ("TRAINING_TASKS", "TaskData", "make_task_data", "reference_distance"),
        "_steps": ("OPTIMIZERS", "TrainSetup"),
        "_mechanism": ("push_pull_ratio", "push_pull_summary"),
        "_runner": ("TRAINING_METRICS", "train_grid", "train_runs"),
        "_statistics": (
            "clopper_pearson_interval",
            "mcnemar_exact",
            "mean_interval",
            "paired_comparison",
            "paired_outcomes",
            "sign_flip_test",
            "wilson_interval",
        ),
        "_compare": (
            "COMPARE_PRESETS",
            "CompareSpec",
            "run_compare",
            "tune_distances",
            "tuning_split",
        ),
        "_presets": ("COLLAPSE_PRESETS", "CollapseSweep"),
        "_collapse": (
            "collapse_phase_table",
            "collapse_summary",
            "read_collapse_runs",
            "run_collapse_sweep",
        ),
    },
    "analysis": {
        "_report": ("analyze",),
        "_io": ("load_embeddings", "load_labels"),
        "_render": ("write_report",),
    },
    "": {
        "_provenance": ("provenance", "write_provenance"),
        "_caches": ("clear_caches",),
        "_distributed": ("init_distributed",),
        "_validate": ("checked",),
        "_compilation": ("enable_compilation_cache",),
    },
}


def locations(subpackage: str | None = None) -> dict[str, str]:
    """``{public name: dotted module that defines it}``, for lazy re-export.

    With ``subpackage`` (``"core"``, ``"sweeps"``, ...), only that subpackage's names.
    """
    out = {}
    for sub, modules in API.items():
        if subpackage is not None and sub != subpackage:
            continue
        for mod, names in modules.items():
            path = f"geotrip.{sub}.{mod}" if sub else f"geotrip.{mod}"
            for name in names:
                if name in out:
                    raise RuntimeError(f"public name {name!r} is listed twice in geotrip._api")
                out[name] = path
    return out


def lazy_exports(package: str, names: dict[str, str]):
    """PEP 562 hooks re-exporting ``names`` (``{name: module}``) from ``package`` lazily.

    Returns ``(__getattr__, __dir__, __all__)`` for the package's ``__init__``: a name's
    module is imported on first access, then cached in the package namespace.
    """
    import importlib
    import sys

    all_ = sorted(names)

    def __getattr__(name: str):
        try:
            module = names[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(all_) | set(vars(sys.modules[package])))

    return __getattr__, __dir__, all_
