"""The Training pipeline and Continual strategy screens, under ``/pluginsv2/clm/training`` and ``/clm/strategy``.

Thin like the other views (:mod:`clm_ui.views`, whose page helpers they use): they pass the query string to
:func:`clm_lib.reporting.training.build_training` / :func:`clm_lib.reporting.strategy.build_strategy`, the same
functions behind ``/clm/api/v1/training/...`` and ``/strategy/history``, and render. The one action, "retrain now",
is :func:`clm_lib.airflow.retrain.request_retraining` as the REST route calls it: an operator (who may trigger
``clm_continual_training``) posts a reason; the run is triggered through Airflow's REST API with the caller's own
token and audited. A Viewer sees no button, and a Viewer's POST is refused before anything happens.
"""

from __future__ import annotations

import logging

from flask import redirect, request, url_for
from flask_appbuilder import BaseView, expose

from clm_lib.airflow.settings import resolve_config
from clm_lib.errors import ClmError
from clm_lib.reporting import strategy, training
from clm_ui import ROUTE_BASE, csrf
from clm_ui.auth import READ, current_user, operate, request_token, requires
from clm_ui.page import TEMPLATES, airflow_api, airflow_root, built, exempt_from_session_csrf, link

log = logging.getLogger(__name__)

MAY_RETRAIN = operate(training.TRAINING_DAG)
"""Retraining from the screen takes what triggering ``clm_continual_training`` takes: it does exactly that."""


class TrainingView(BaseView):
    """Continual learning → Training pipeline: runs with their trigger, state, duration, loss curve and links; when
    the drift monitor checks next; "retrain now" for operators."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "training"

    @expose("/training")
    @requires(READ)
    def training(self):
        return self._render(requested=request.args.get("requested"))

    @expose("/training/retrain", methods=["GET", "POST"])
    @requires(MAY_RETRAIN)
    def retrain(self):
        if request.method == "GET":  # back from the login page after a POST: nothing to do but show the page
            return redirect(url_for("TrainingView.training"))
        from clm_lib.airflow.retrain import RetrainRefused, airflow_problem, request_retraining
        from clm_lib.services.airflow_client import AirflowAPIError

        user = current_user()
        form = {"reason": request.form.get("reason", "").strip()}
        problem = None
        forged = csrf.refusal(user)
        if forged:
            log.warning("clm retrain by %s refused: %s", user.get_name(), forged)
            problem = f"Refused: {forged}.", 403
        else:
            token, _ = request_token()
            try:
                run_id = request_retraining(resolve_config(), airflow_url=airflow_api(), token=token or "",
                                            reason=form["reason"], actor=f"airflow:{user.get_name()}")  # fmt: skip
            except RetrainRefused as exc:
                problem = f"{str(exc)[0].upper()}{str(exc)[1:]}.", 400
            except AirflowAPIError as exc:
                status, message = airflow_problem(exc)
                problem = message, status
            except ClmError as exc:
                problem = str(exc), 503
            except Exception:  # no traceback on the page; the log has it
                log.exception("clm retrain by %s failed", user.get_name())
                problem = "The request failed unexpectedly; the Airflow api-server log has the details.", 500
            else:
                return redirect(url_for("TrainingView.training", requested=run_id), code=303)
        message, status = problem
        return self._render(status, retrain_problem=message, form=form)

    def _render(self, status: int = 200, **context):
        user = current_user()
        may = MAY_RETRAIN.allows(user)
        made = {}

        def build(cfg):
            made["page"] = training.build_training(cfg, request.args)
            return made["page"]

        body, code = built("training pipeline", build, "clm/training.html", status, crumb="Training pipeline",
                            link=lambda **c: link("TrainingView.training", **c), may_retrain=may,
                            csrf_field=csrf.FIELD, form_token=csrf.form_token(user) if may else None,
                            api=f"{airflow_root()}/clm/api/v1", strategy_url=url_for("StrategyView.strategy"),
                            serving_url=f"{request.script_root}{ROUTE_BASE}/serving",
                            drift_url=f"{request.script_root}{ROUTE_BASE}/drift", **context)  # fmt: skip
        if code == 200 and "page" in made:
            code = made["page"].status
        return body, code


class StrategyView(BaseView):
    """Continual learning → Continual strategy: per run, the replay buffer per task and the replay fraction over
    time, the dynamic replay weights and why, EWC, distillation and frozen layers."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "strategy"

    @expose("/strategy")
    @requires(READ)
    def strategy(self):
        return built("continual strategy", lambda cfg: strategy.build_strategy(cfg, request.args),
                      "clm/strategy.html", crumb="Continual strategy",
                      link=lambda **c: link("StrategyView.strategy", **c),
                      training_url=url_for("TrainingView.training"), api=f"{airflow_root()}/clm/api/v1")  # fmt: skip


exempt_from_session_csrf(TrainingView.retrain)
