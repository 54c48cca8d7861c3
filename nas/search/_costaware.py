"""The default sampler: spend accuracy evaluations only where they can move the Pareto front.

In hardware-aware NAS an architecture's latency and energy cost microseconds to look up while its
accuracy costs a training run. :class:`CostAwareSampler` exploits the asymmetry:

1. It keeps a pool of candidate architectures (the whole space when it is small enough, else a
   seeded random sample, plus mutations of the current front each trial) whose free objectives
   (latency, energy, params, ...) are computed once, vectorized.
2. A Gaussian-process surrogate of each expensive objective (error) is fitted on the trials
   evaluated so far; its inputs are the one-hot choices of the architecture's effective form
   (``SearchSpace.effective``: dead cell edges removed, equivalent nodes merged), its op
   counts and its free costs (bigger networks tend to be more accurate, a prior the costs give
   for free). Architectures computing the same function thus share one prediction, and of each
   effective form only the members no other member beats on every free cost are ever
   proposed: NAS-Bench-201's 15,625 cells are 7,855 forms, and training a second member of a
   form is a wasted evaluation.
3. Each candidate gets a predicted point: its exact free costs and its predicted error
   ``mu - beta * sigma``. The candidate whose point adds the most hypervolume to the current
   front is evaluated next (hypervolume improvement, as in SMS-EGO, Ponweiser et al., PPSN
   2008); candidates predicted to add nothing are not trained. When none adds anything, the
   one closest to the front is taken. Every third trial goes to the best optimistic error
   ``mu - 2 sigma`` outright, since the accurate end of the front spans the widest range of costs.
4. The first trials are spread over strata of equal count of the first free objective,
   starting in the middle; the second is the cheapest architecture (on the front whatever its
   error). The surrogate thus sees cheap and expensive architectures alike from the start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
import scipy.linalg
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from nas.search._pareto import _hv, _nondominated
from nas.space import Architecture, SearchSpace

__all__ = ["CostAwareSampler", "make_default_sampler"]

log = logging.getLogger(__name__)

FreeCosts = Callable[[Sequence[Architecture]], np.ndarray]

_STATUS_ATTR = "status"  # trials skipped by a free constraint carry status "infeasible"


class _GP:
    """Exact GP regression with a squared-exponential kernel, hyperparameters by marginal
    likelihood over a small grid (the data are at most a few hundred points)."""

    _LENGTHS = (0.5, 1.0, 2.0, 4.0)
    _NOISES = (1e-4, 1e-2, 1e-1)

    def fit(self, x: np.ndarray, y: np.ndarray) -> _GP:
        self.x = x
        self.mean, self.scale = float(y.mean()), float(y.std()) or 1.0
        z = (y - self.mean) / self.scale
        d2 = _sqdist(x, x)
        best = None
        for length in self._LENGTHS:
            k = np.exp(-0.5 * d2 / length**2)
            for noise in self._NOISES:
                try:
                    chol = np.linalg.cholesky(k + noise * np.eye(len(z)))
                except np.linalg.LinAlgError:
                    continue
                alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, z))
                # log marginal likelihood up to a constant (Rasmussen & Williams, Eq. 2.30)
                lml = -0.5 * float(z @ alpha) - float(np.log(np.diag(chol)).sum())
                if best is None or lml > best[0]:
                    best = (lml, length, chol, alpha)
        assert best is not None  # noise 1e-1 on a PSD kernel always factorizes
        _, self.length, self.chol, self.alpha = best
        return self

    def predict(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ks = np.exp(-0.5 * _sqdist(xs, self.x) / self.length**2)  # (m, n)
        mu = ks @ self.alpha
        v = scipy.linalg.solve_triangular(self.chol, ks.T, lower=True)  # (n, m)
        var = np.maximum(1.0 - np.einsum("ij,ij->j", v, v), 1e-12)
        return self.mean + self.scale * mu, self.scale * np.sqrt(var)


def _redundant(costs: np.ndarray) -> np.ndarray:
    """Rows weakly dominated by another row (ties: all but the first are redundant)."""
    n = len(costs)
    le = np.all(costs[:, None, :] <= costs[None, :, :], axis=2)  # le[a, b]: a costs <= b
    lt = np.any(costs[:, None, :] < costs[None, :, :], axis=2)
    earlier = np.arange(n)[:, None] < np.arange(n)[None, :]
    beats = le & (lt | earlier)  # a makes b redundant
    np.fill_diagonal(beats, False)
    return beats.any(axis=0)


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


class CostAwareSampler(optuna.samplers.BaseSampler):
    """Pick each architecture to evaluate by its optimistic hypervolume improvement.

    Args:
        space: The search space (its categorical parameters are sampled jointly).
        free_costs: ``free_costs(archs)`` -> ``(n, n_free)`` values of the objectives that cost
            nothing to compute, in objective order (those whose index is not in ``expensive``).
        directions: ``"minimize"``/``"maximize"`` of every objective of the study.
        expensive: Indices of the objectives that need training (error/accuracy).
        seed: Seed of the pool, the start-up draws and mutations.
        n_startup: Trials spread over the free costs before the surrogate is used.
        exploit_every: Every this many trials, the candidate with the best optimistic expensive
            objective ``mu - exploit_kappa * sigma`` is taken outright (0: never).
        exploit_kappa: Optimism of those trials (GP-UCB's bound; 2 beat the posterior mean on
            NAS-Bench-201, where the mean alone let some seeds settle on a local optimum).
        pool_size: Candidates kept (the whole space when it is at most this large).
        beta: Optimism of the lower confidence bound ``mu - beta * sigma``; 0 (the posterior
            mean) did best on NAS-Bench-201 (``benchmarks/search_efficiency.py``).
        feasible: Optional ``feasible(archs)`` -> bool array: candidates violating a free
            constraint are never proposed.

    Thread safety: one sampler per process; it is deterministic for a seed and a trial history.
    A new sampler given a study that already holds trials first redoes their random draws, so
    a search continued after a stop proposes, trial by trial, what one run without the stop
    would have (Optuna's own samplers start a fresh random state instead).
    """

    def __init__(
        self,
        space: SearchSpace,
        free_costs: FreeCosts,
        *,
        directions: Sequence[str],
        expensive: Sequence[int],
        seed: int | None = None,
        n_startup: int = 8,
        exploit_every: int = 3,
        pool_size: int = 20_000,
        beta: float = 0.0,
        exploit_kappa: float = 2.0,
        feasible: Callable[[Sequence[Architecture]], np.ndarray] | None = None,
        mutations: int = 256,
    ) -> None:
        self._space = space
        self._free_costs = free_costs
        self._directions = list(directions)
        self._expensive = list(expensive)
        self._free = [i for i in range(len(directions)) if i not in self._expensive]
        if not self._free:
            raise ValueError("CostAwareSampler needs at least one free objective")
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._n_startup = n_startup
        self._pool_size = pool_size
        self._beta = beta
        self._exploit_every = exploit_every
        self._exploit_kappa = exploit_kappa
        self._feasible = feasible
        self._mutations = mutations
        self._params = space.parameters()
        self._names = list(self._params)
        self._offsets = np.cumsum([0] + [len(v) for v in self._params.values()])[:-1]
        self._onehot_width = sum(len(v) for v in self._params.values())
        labels = sorted({str(c) for v in self._params.values() for c in v})
        self._n_labels = len(labels)
        self._label_of = [
            np.array([labels.index(str(c)) for c in v]) for v in self._params.values()
        ]
        self._archs: list[Architecture] = []
        self._finished_ids: dict[int, str] = {}  # trial number -> arch_id
        self._ids: dict[str, int] = {}
        self._costs = np.zeros((0, len(self._free)))
        # what the surrogate sees: the effective form's choice features and free costs
        self._eff_static = self._static_features(np.zeros((0, len(self._names)), dtype=np.int64))
        self._eff_costs = self._costs.copy()
        # pool indices per effective form; a member is redundant when another member of its
        # form costs no more in every free objective (evaluated or not, it is the one to train)
        self._class_members: dict[str, list[int]] = {}
        self._redundant = np.zeros(0, dtype=bool)

    # -- optuna interface ---------------------------------------------------------------------
    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._random.reseed_rng()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {k: CategoricalDistribution(list(v)) for k, v in self._params.items()}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not self._archs:
            self._add(self._initial_pool())
            self._catch_up(trials, trial.number)
        running = {
            self._arch_id(t.params)
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.number != trial.number and len(t.params) == len(self._names)
        }
        pick = self._propose(trials, running, decide=True)
        return {} if pick is None else self._space.to_params(self._archs[pick])

    def _catch_up(self, trials: list[FrozenTrial], number: int) -> None:
        """Redo the random draws (and the pool's growth) of the study's trials before
        ``number``, each with the trials finished before it: a search continued in a new
        process then proposes, trial by trial, what one process without the stop would have."""
        for t in range(number):
            self._propose([x for x in trials if x.number < t], set(), decide=False)

    def _propose(
        self, trials: list[FrozenTrial], running: set[str], *, decide: bool
    ) -> int | None:
        """The pool index to evaluate next, given the finished ``trials`` (None: the pool is
        exhausted). With ``decide=False``, only what consumes random draws or grows the pool
        (mutations, start-up picks): the surrogate's choice draws nothing."""
        done_ids = {self._trial_arch_id(t) for t in trials} | running
        usable = [
            t
            for t in trials
            if t.values is not None
            and t.user_attrs.get(_STATUS_ATTR) != "infeasible"
            and np.all(np.isfinite(t.values))
        ]
        if len(usable) >= 2:
            self._add(self._mutants(usable))
        open_mask = np.ones(len(self._archs), dtype=bool)
        taken = [self._ids.get(i, -1) for i in done_ids]
        open_mask[[i for i in taken if i >= 0]] = False
        if not open_mask.any():
            return None  # everything evaluated: fall back to independent (random) sampling
        if (open_mask & ~self._redundant).any():
            open_mask &= ~self._redundant
        if len(usable) < self._n_startup:
            return self._startup(open_mask, len(usable))
        return self._acquire(usable, open_mask) if decide else None

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    # -- pool -----------------------------------------------------------------------------------
    def _arch_id(self, params: dict[str, Any]) -> str:
        return self._space.from_choices(params).arch_id

    def _trial_arch_id(self, trial: FrozenTrial) -> str:
        """A finished trial's architecture id (remembered: its params never change)."""
        if trial.number not in self._finished_ids:
            self._finished_ids[trial.number] = self._arch_id(trial.params)
        return self._finished_ids[trial.number]

    def _initial_pool(self) -> list[Architecture]:
        if self._space.size() <= self._pool_size:
            return list(self._space.enumerate())
        seed = int(self._rng.integers(2**32))
        rng = np.random.default_rng(seed)
        return [self._space.random(rng) for _ in range(self._pool_size)]

    def _add(self, archs: list[Architecture]) -> None:
        fresh = []
        for a in archs:
            if a.arch_id not in self._ids:
                self._ids[a.arch_id] = -1
                fresh.append(a)
        if self._feasible is not None and fresh:
            ok = np.asarray(self._feasible(fresh), dtype=bool)
            fresh = [a for a, keep in zip(fresh, ok, strict=True) if keep]
        if not fresh:
            return
        costs = self._signed_costs(fresh)
        eff_codes, eff_costs, eff_ids = self._effective_rows(fresh, costs)
        touched = set()
        for a, eff_id in zip(fresh, eff_ids, strict=True):
            self._ids[a.arch_id] = len(self._archs)
            self._class_members.setdefault(eff_id, []).append(len(self._archs))
            touched.add(eff_id)
            self._archs.append(a)
        self._costs = np.vstack([self._costs, costs])
        self._eff_static = np.vstack([self._eff_static, self._static_features(eff_codes)])
        self._eff_costs = np.vstack([self._eff_costs, eff_costs])
        self._redundant = np.concatenate([self._redundant, np.zeros(len(fresh), dtype=bool)])
        for eff_id in touched:
            members = self._class_members[eff_id]
            if len(members) > 1:
                self._redundant[members] = _redundant(self._costs[members])

    def _signed_costs(self, archs: Sequence[Architecture]) -> np.ndarray:
        """Free costs of ``archs``, negated where maximized."""
        costs = np.asarray(self._free_costs(archs), dtype=float).reshape(len(archs), -1)
        return costs * np.array(
            [-1.0 if self._directions[i] == "maximize" else 1.0 for i in self._free]
        )

    def _effective_rows(
        self, archs: Sequence[Architecture], costs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Codes, free costs and ids of the effective forms of ``archs`` (``space.effective``):
        what the surrogate sees, so architectures computing the same function get the same
        predicted accuracy."""
        eff = [self._space.effective(a) for a in archs]
        changed = [n for n, (a, e) in enumerate(zip(archs, eff, strict=True)) if a != e]
        eff_costs = costs.copy()
        if changed:
            eff_costs[changed] = self._signed_costs([eff[n] for n in changed])
        return self._space.encode(eff), eff_costs, [e.arch_id for e in eff]

    def _mutants(self, usable: list[FrozenTrial]) -> list[Architecture]:
        """One- and two-parameter mutations of the current front (local search for big spaces)."""
        if self._space.size() <= self._pool_size or self._mutations <= 0:
            return []
        values = self._minimized(np.array([t.values for t in usable], dtype=float))
        front = [usable[i] for i in np.flatnonzero(_nondominated(values))]
        out = []
        for _ in range(self._mutations):
            base = dict(front[int(self._rng.integers(len(front)))].params)
            for _ in range(1 + int(self._rng.integers(2))):
                name = self._names[int(self._rng.integers(len(self._names)))]
                choices = self._params[name]
                base[name] = choices[int(self._rng.integers(len(choices)))]
            out.append(self._space.from_choices(base))
        return out

    # -- selection ------------------------------------------------------------------------------
    def _minimized(self, values: np.ndarray) -> np.ndarray:
        signs = np.array([-1.0 if d == "maximize" else 1.0 for d in self._directions])
        return values * signs

    def _startup(self, open_mask: np.ndarray, n_done: int) -> int:
        """A random open candidate from the next of ``n_startup`` strata of equal count of the
        first free cost, starting in the middle, where random search's first draws land and
        much of the front's hypervolume lies; the cheapest candidate second (it is on the front
        whatever its error). Starting with the cheapest cell (often one that computes nothing)
        left the first few evaluations far behind random search's."""
        cost = self._costs[:, 0]
        if n_done == 1:
            cheapest = np.flatnonzero(open_mask & (cost == cost[open_mask].min()))
            return int(cheapest[int(self._rng.integers(len(cheapest)))])
        edges = np.quantile(cost, np.linspace(0.0, 1.0, self._n_startup + 1))
        stratum = (n_done * 5 + 3) % self._n_startup  # visit strata in a spread-out order
        lo, hi = edges[stratum], edges[stratum + 1]
        inside = open_mask & (cost >= lo) & (cost <= hi)
        pool = np.flatnonzero(inside if inside.any() else open_mask)
        return int(pool[int(self._rng.integers(len(pool)))])

    def _static_features(self, codes: np.ndarray) -> np.ndarray:
        """The inputs that depend only on the choices: one-hot choices, then how often each
        choice occurs across the parameters (op counts of a cell, e.g.). Pool rows keep theirs."""
        n = codes.shape[0]
        onehot = np.zeros((n, self._onehot_width))
        onehot[np.arange(n)[:, None], self._offsets[None, :] + codes] = 1.0
        counts = np.zeros((n, self._n_labels))
        for col in range(codes.shape[1]):
            np.add.at(counts, (np.arange(n), self._label_of[col][codes[:, col]]), 1.0)
        return np.hstack([onehot, counts / max(1, codes.shape[1] // 2)])

    def _features(self, static: np.ndarray, costs: np.ndarray) -> np.ndarray:
        # free costs as extra inputs, rank-scaled over the pool and weighted like a few choices
        lo, hi = self._cost_lo, self._cost_hi
        scaled = np.log1p(np.maximum(costs - lo, 0.0)) / np.log1p(np.maximum(hi - lo, 1e-12))
        w = self._onehot_width
        return np.hstack([static[:, :w], 2.0 * scaled, static[:, w:]])

    def _acquire(self, usable: list[FrozenTrial], open_mask: np.ndarray) -> int:
        values = self._minimized(np.array([t.values for t in usable], dtype=float))  # (n, k)
        costs = values[:, self._free]
        self._cost_lo = np.minimum(self._costs.min(0), costs.min(0))
        self._cost_hi = np.maximum(self._costs.max(0), costs.max(0))
        archs = [self._space.from_choices(t.params) for t in usable]
        train_codes, train_costs, _ = self._effective_rows(archs, costs)
        x_train = self._features(self._static_features(train_codes), train_costs)
        cand = np.flatnonzero(open_mask)
        x_cand = self._features(self._eff_static[cand], self._eff_costs[cand])
        points = np.zeros((len(cand), len(self._directions)))
        points[:, self._free] = self._costs[cand]
        optimistic = np.zeros(len(cand))
        for j in self._expensive:
            # errors are heavy-tailed (a broken cell scores 90%, good ones 5-10%): the GP models
            # log(y - best + delta), which spreads out the region that decides the front
            y = values[:, j]
            delta = 0.01 * (y.max() - y.min()) + 1e-12
            mu, sigma = _GP().fit(x_train, np.log(y - y.min() + delta)).predict(x_cand)
            points[:, j] = np.exp(mu - self._beta * sigma) + y.min() - delta
            if j == self._expensive[0]:
                optimistic = mu - self._exploit_kappa * sigma
        # normalize: free objectives by the pool's range, expensive by what was seen/predicted
        lo = np.minimum(values.min(0), points.min(0))
        hi = values.max(0)
        hi[self._free] = np.maximum(self._costs.max(0), values[:, self._free].max(0))
        span = np.where(hi > lo, hi - lo, 1.0)
        norm_front = (values[_nondominated(values)] - lo) / span
        norm_cand = np.minimum((points - lo) / span, 1.05)
        ref = np.full(values.shape[1], 1.1)
        # how far each candidate is dominated by the front (<= 0: it would join the front)
        gap = np.max(
            np.min(norm_cand[:, None, :] - norm_front[None, :, :], axis=2), axis=1
        )  # (m,)
        every = self._exploit_every
        if every and len(usable) % every == every - 1:
            # the most accurate end of the front spans the widest range of costs, so it holds
            # much of the hypervolume: every few trials go to the best optimistic error outright
            return int(cand[int(np.argmin(optimistic))])
        order = np.argsort(gap, kind="stable")
        improving = order[gap[order] < 0][:64]
        if len(improving) == 0:
            return int(cand[order[0]])
        base = _hv(norm_front, ref)
        gains = np.array(
            [_hv(np.vstack([norm_front, norm_cand[i]]), ref) - base for i in improving]
        )
        return int(cand[improving[int(np.argmax(gains))]])


def offset_seed(seed: int, resumed_after: int) -> int:
    """The seed for a sampler that cannot redo a study's earlier draws, continuing a study of
    ``resumed_after`` finished trials: another stream than the first run's (a fresh run: the
    seed as given)."""
    return (seed + 1_000_003 * resumed_after) % 2**32  # (samplers take 32 bits)


def make_default_sampler(
    space: SearchSpace,
    free_costs: FreeCosts,
    *,
    directions: Sequence[str],
    expensive: Sequence[int],
    seed: int | None,
    feasible: Callable[[Sequence[Architecture]], np.ndarray] | None = None,
    resumed_after: int = 0,
) -> optuna.samplers.BaseSampler:
    """The framework's default sampler for a study with these objectives.

    :class:`CostAwareSampler` when some objectives need training and some are free; multivariate
    TPE otherwise (all free: nothing to save; all expensive: no cost information to exploit).
    ``resumed_after``: trials the study already holds. TPE cannot redo their draws, so its seed
    is offset by their number (it would otherwise repeat the first run's start-up draws);
    :class:`CostAwareSampler` redoes them and takes the seed as given.
    """
    if not expensive or len(expensive) == len(directions):
        tpe_seed = None if seed is None else offset_seed(seed, resumed_after)
        return optuna.samplers.TPESampler(seed=tpe_seed, multivariate=True)
    return CostAwareSampler(
        space,
        free_costs,
        directions=directions,
        expensive=expensive,
        seed=seed,
        feasible=feasible,
    )
