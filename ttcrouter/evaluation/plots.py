"""Plots of an evaluation, as scikit-learn Display objects: accuracy-cost frontiers, strategy mix.

A display computes what it draws once (``from_report``), draws it with ``plot(ax=None)`` on
the given axes or on a new figure, and returns itself with ``figure_`` and ``ax_`` (or
``axes_``) set, as :class:`sklearn.metrics.RocCurveDisplay` does::

    disp = FrontierDisplay.from_report(report, axis="latency").plot()
    disp.figure_.savefig("accuracy_vs_latency.png")

A new figure is a plain :class:`matplotlib.figure.Figure` on the Agg canvas, not a pyplot
figure, so that saving a report opens no window and leaves nothing in pyplot's state.
"""

from __future__ import annotations

import numpy as np

from ..frontier import upper_envelope
from .mixes import matched_budget_mixes

__all__ = ["FrontierDisplay", "StrategyMixDisplay", "MatchedMixDisplay", "BatchBudgetDisplay",
           "COST_AXES"]

#: Cost axis -> column of the static, adaptive and oracle tables of a report.
COST_AXES = {"tokens": "mean_tokens", "latency": "mean_latency_s"}
_XLABELS = {"tokens": "mean generated tokens per query", "latency": "mean latency per query (s)"}


def _new_axes(figsize, n_rows=1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=110)
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(n_rows, 1, k + 1) for k in range(n_rows)]


class FrontierDisplay:
    """Accuracy against one mean cost: static strategies, their frontier, router and oracle.

    Parameters
    ----------
    static_cost, static_accuracy : array-like of shape (n_strategies,)
        The static strategies' points.
    strategies : list of str
        Their names (annotations).
    router_cost, router_accuracy : array-like of shape (n_settings,)
        The adaptive router's points over a penalty sweep.
    oracle_cost, oracle_accuracy : array-like of shape (n_settings,), default=None
        The per-query oracle's points.
    axis : {"tokens", "latency"}, default="tokens"
        The cost axis (labels).
    n_test : int, default=None
        Test queries (title).

    Attributes
    ----------
    figure_ : matplotlib Figure
    ax_ : matplotlib Axes
    """

    def __init__(self, static_cost, static_accuracy, strategies, router_cost, router_accuracy,
                 oracle_cost=None, oracle_accuracy=None, *, axis="tokens", n_test=None):
        self.static_cost = np.asarray(static_cost, dtype=float)
        self.static_accuracy = np.asarray(static_accuracy, dtype=float)
        self.strategies = list(strategies)
        self.router_cost = np.asarray(router_cost, dtype=float)
        self.router_accuracy = np.asarray(router_accuracy, dtype=float)
        self.oracle_cost = None if oracle_cost is None else np.asarray(oracle_cost, dtype=float)
        self.oracle_accuracy = (None if oracle_accuracy is None
                                else np.asarray(oracle_accuracy, dtype=float))
        self.axis = axis
        self.n_test = n_test

    @classmethod
    def from_report(cls, report, *, axis="tokens"):
        """The display of one cost axis of an :class:`~ttcrouter.evaluation.EvaluationReport`.

        The router and oracle points are those of the sweep that prices that axis alone.
        """
        if axis not in COST_AXES:
            raise ValueError(f"axis must be one of {sorted(COST_AXES)}, got {axis!r}.")
        col = COST_AXES[axis]
        st = report.static
        ad = report.adaptive[axis].sort_values(col)
        orc = report.oracle[axis].sort_values(col)
        return cls(st[col], st["accuracy"], [str(s) for s in st.index], ad[col],
                   ad["accuracy"], orc[col], orc["accuracy"], axis=axis, n_test=report.n_test)

    def plot(self, ax=None):
        """Draw on ``ax`` (a new figure when None).

        Returns
        -------
        self : FrontierDisplay
        """
        new = ax is None
        if new:
            fig, (ax,) = _new_axes((7.0, 4.8))
        ax.scatter(self.static_cost, self.static_accuracy, color="0.35", zorder=3,
                   label="static strategies")
        for name, c, a in zip(self.strategies, self.static_cost, self.static_accuracy):
            ax.annotate(name, (c, a), fontsize=6.5, xytext=(3, 3), textcoords="offset points",
                        color="0.25")
        c, a = upper_envelope(self.static_cost, self.static_accuracy)
        ax.step(c, a, where="post", color="0.55", ls=":", lw=1, label="static frontier")
        ax.plot(self.router_cost, self.router_accuracy, "o-", color="tab:blue", ms=3, lw=1.5,
                label=f"adaptive router (lambda_{self.axis} sweep)")
        points = [self.static_cost, self.router_cost]
        if self.oracle_cost is not None:
            ax.plot(self.oracle_cost, self.oracle_accuracy, "s--", color="tab:green", ms=2.5,
                    lw=1.2, label="per-query oracle")
            points.append(self.oracle_cost)
        positive = np.concatenate(points)
        if (positive > 0).all() and positive.max() / positive.min() > 8:
            ax.set_xscale("log")
        ax.set_xlabel(_XLABELS.get(self.axis, f"mean {self.axis} per query"))
        ax.set_ylabel("accuracy on test queries")
        queries = "" if self.n_test is None else f" ({self.n_test} test queries)"
        ax.set_title(f"Accuracy vs {self.axis}{queries}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, loc="best")
        if new:
            fig.tight_layout()
        self.ax_, self.figure_ = ax, ax.figure
        return self


class StrategyMixDisplay:
    """Share of queries routed to each strategy as a penalty grows, one panel per sweep.

    Parameters
    ----------
    mix : dict of str to DataFrame
        Per sweep, shares (columns: strategies) at each penalty (rows).
    lambdas : dict of str to array-like
        Per sweep, the penalty of each row.
    strategies : list of str
        Column order and colors.

    Attributes
    ----------
    figure_ : matplotlib Figure
    axes_ : list of matplotlib Axes
        One per sweep.
    """

    def __init__(self, mix, lambdas, strategies):
        self.mix = dict(mix)
        self.lambdas = {k: np.asarray(v, dtype=float) for k, v in lambdas.items()}
        self.strategies = list(strategies)

    @classmethod
    def from_report(cls, report, *, sweeps=("tokens", "latency")):
        """The mix of an :class:`~ttcrouter.evaluation.EvaluationReport`'s single-cost sweeps."""
        sweeps = [s for s in sweeps if s in report.mix]
        return cls({s: report.mix[s] for s in sweeps},
                   {s: report.adaptive[s][f"lambda_{s}"] for s in sweeps}, report.strategies)

    def plot(self, ax=None):
        """Draw one panel per sweep on ``ax`` (a sequence of Axes), or on a new figure.

        Returns
        -------
        self : StrategyMixDisplay
        """
        from matplotlib import colormaps

        sweeps = list(self.mix)
        new = ax is None
        if new:
            fig, axes = _new_axes((7.0, 3.2 * len(sweeps) + 0.8), n_rows=len(sweeps))
        else:
            axes = list(np.atleast_1d(ax))
            if len(axes) != len(sweeps):
                raise ValueError(f"ax holds {len(axes)} Axes for {len(sweeps)} sweeps.")
        cmap = colormaps["tab20"]
        colors = {s: cmap(i % 20) for i, s in enumerate(self.strategies)}
        for ax_, sweep in zip(axes, sweeps):
            mix, lam = self.mix[sweep], self.lambdas[sweep]
            x = np.arange(len(lam))
            bottom = np.zeros(len(lam))
            for s in self.strategies:
                share = mix[s].to_numpy()
                if share.max() > 0:
                    ax_.bar(x, share, bottom=bottom, width=1.0, color=colors[s], label=s,
                            edgecolor="none")
                    bottom += share
            step = max(1, len(lam) // 8)
            ax_.set_xticks(x[::step])
            ax_.set_xticklabels([f"{v:.2g}" for v in lam[::step]], fontsize=7)
            ax_.set_xlim(-0.5, len(lam) - 0.5)
            ax_.set_ylim(0, 1)
            ax_.set_xlabel(f"lambda_{sweep} (grid index; labels are penalty values)")
            ax_.set_ylabel("share of test queries")
            ax_.set_title(f"Strategy mix as lambda_{sweep} grows")
            ax_.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
        if new:
            fig.tight_layout()
        self.axes_, self.figure_ = axes, axes[0].figure
        return self


class MatchedMixDisplay:
    """The token-aware and the latency-aware router's strategy mix at the same budgets.

    One panel per cost axis; at each budget two stacked bars side by side, ``T`` for the
    router that prices tokens and ``L`` for the one that prices latency
    (:func:`ttcrouter.evaluation.mixes.matched_budget_mixes`).

    Parameters
    ----------
    table : DataFrame
        :func:`~ttcrouter.evaluation.mixes.matched_budget_mixes`'s output.
    strategies : list of str
        Color order (the same colors as :class:`StrategyMixDisplay`).

    Attributes
    ----------
    figure_ : matplotlib Figure
    axes_ : list of matplotlib Axes
    """

    def __init__(self, table, strategies):
        self.table = table
        self.strategies = list(strategies)

    @classmethod
    def from_report(cls, report, *, budgets=None):
        """The matched-budget mixes of an :class:`~ttcrouter.evaluation.EvaluationReport`."""
        return cls(matched_budget_mixes(report, budgets=budgets), report.strategies)

    def plot(self, ax=None):
        """Draw one panel per cost axis on ``ax`` (a sequence of Axes), or on a new figure.

        Returns
        -------
        self : MatchedMixDisplay
        """
        from matplotlib import colormaps

        axes_names = list(dict.fromkeys(self.table["axis"]))
        if ax is None:
            fig, axes = _new_axes((7.6, 3.3 * len(axes_names) + 0.6), n_rows=len(axes_names))
        else:
            axes, fig = list(np.atleast_1d(ax)), None
            if len(axes) != len(axes_names):
                raise ValueError(f"ax holds {len(axes)} Axes for {len(axes_names)} cost axes.")
        cmap = colormaps["tab20"]
        colors = {s: cmap(i % 20) for i, s in enumerate(self.strategies)}
        for ax_, name in zip(axes, axes_names):
            t = self.table[self.table["axis"] == name].reset_index(drop=True)
            used = set()
            ticks, labels = [], []
            for k, row in t.iterrows():
                for j, router in enumerate(("tokens", "latency")):
                    x = 3 * k + j
                    bottom = 0.0
                    for s, share in sorted(row[f"{router}_mix"].items(),
                                           key=lambda kv: self.strategies.index(kv[0])):
                        ax_.bar(x, share, bottom=bottom, width=0.9, color=colors[s],
                                edgecolor="none", label=None if s in used else s)
                        used.add(s)
                        bottom += share
                    ticks.append(x)
                    labels.append(("T" if router == "tokens" else "L")
                                  + (f"\n<= {row['budget']:.3g}" if j == 0 else ""))
            ax_.set_xticks(ticks)
            ax_.set_xticklabels(labels, fontsize=7)
            ax_.set_ylim(0, 1)
            ax_.set_ylabel("share of test queries")
            ax_.set_xlabel(f"budget, {_XLABELS[name]}: T prices tokens, L prices latency")
            ax_.set_title(f"Strategy mix at matched {name} budgets")
            ax_.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
        if fig is not None:
            fig.tight_layout()
        self.axes_, self.figure_ = axes, axes[0].figure
        return self


class BatchBudgetDisplay:
    """Realised accuracy at each batch budget: allocation, per-query lambda, static mix.

    One panel per cost axis; error bars are the table's 90% bootstrap intervals.

    Parameters
    ----------
    table : DataFrame
        :attr:`EvaluationReport.batch`: ``axis``, ``budget``, ``method``, ``accuracy``,
        ``accuracy_lo``, ``accuracy_hi``.

    Attributes
    ----------
    figure_ : matplotlib Figure
    axes_ : list of matplotlib Axes
    """

    def __init__(self, table):
        self.table = table

    @classmethod
    def from_report(cls, report):
        """The batch table of an :class:`~ttcrouter.evaluation.EvaluationReport`."""
        if report.batch is None:
            raise ValueError("The report has no batch budgets (evaluate(batch_budgets=...)).")
        return cls(report.batch)

    def plot(self, ax=None):
        """Draw one panel per cost axis on ``ax`` (a sequence of Axes), or on a new figure.

        Returns
        -------
        self : BatchBudgetDisplay
        """
        axes_names = list(dict.fromkeys(self.table["axis"]))
        if ax is None:
            fig, axes = _new_axes((6.4, 3.4 * len(axes_names) + 0.4), n_rows=len(axes_names))
        else:
            axes, fig = list(np.atleast_1d(ax)), None
            if len(axes) != len(axes_names):
                raise ValueError(f"ax holds {len(axes)} Axes for {len(axes_names)} cost axes.")
        for ax_, name in zip(axes, axes_names):
            t = self.table[self.table["axis"] == name]
            for k, (method, g) in enumerate(t.groupby("method", sort=False)):
                g = g.dropna(subset=["accuracy"])
                x = g["budget"].to_numpy() * (1 + 0.02 * (k - 1))  # side by side
                err = None
                if "accuracy_lo" in g and g["accuracy_lo"].notna().all():
                    err = [g["accuracy"] - g["accuracy_lo"], g["accuracy_hi"] - g["accuracy"]]
                ax_.errorbar(x, g["accuracy"], yerr=err, marker="o", ms=4, capsize=2,
                             label=method)
            ax_.set_xscale("log")
            ax_.set_xlabel(f"batch budget, {_XLABELS[name]}")
            ax_.set_ylabel("realised accuracy")
            ax_.set_title(f"Spending a mean {name} budget across each test fold")
            ax_.legend(fontsize=7.5, loc="best")
        if fig is not None:
            fig.tight_layout()
        self.axes_, self.figure_ = axes, axes[0].figure
        return self
