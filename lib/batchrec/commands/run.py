"""``batchrec run PIPELINE.toml --run-date D``: the nightly pipeline in one SparkSession.

The plan (``batchrec.pipeline``) was parsed and checked before Spark started. Here:

1. every location of every stage is checked at once (``batchrec.locations``): no output may equal,
   contain or sit inside an input, a solution or another stage's output, and an existing output
   must be of its kind; nothing is written before this passes;
2. a run date whose ``_SUCCESS`` marker exists is a no-op (``--force`` runs it again);
3. the stages run in order by calling the command functions in-process (``batchrec.commands.*``);
   a stage already completed for this run date (the state file says so) is skipped, so a run after
   a failure resumes at the stage that failed and earlier outputs stay as they are. Each stage is
   idempotent for its run date (versions of a run date and Delta rows of a run are replaced). The
   datasets are read and validated once per run: ``train`` reuses the rows ``validate`` checked
   (``batchrec.datasets.validation.shared_validation``);
4. after each stage the state file ``<runs>/<D>/state.json`` is rewritten (atomically, through
   ``batchrec.fs``); when every stage is complete the manifest and then ``_SUCCESS`` are written.

With ``stage`` only that stage runs (Airflow runs one task per stage), after checking that the
stages it needs are complete in the state file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Optional

import batchrec
from batchrec import fs, logs, pipeline as P, registry
from batchrec.errors import JobError, UsageError
from batchrec.locations import (KIND_DELTA, KIND_FILE, KIND_FOLDER, KIND_SOLUTION, Location,
                                check_locations, local_uri)

log = logging.getLogger(__name__)

SUCCEEDED, SKIPPED, FAILED, RUNNING = "succeeded", "skipped", "failed", "running"
COMPLETE = (SUCCEEDED, SKIPPED)
STATE_FORMAT = 1
REQUESTS = {"recommend": "users", "related": "items", "segment": "segments"}  # the jobs' count labels


def run(spark, settings, run_date: dt.date, *, plan: P.Pipeline, stage: Optional[str] = None,
        force: bool = False) -> dict:
    """Run ``plan`` (or only ``stage``) for ``run_date``; returns the run's one-line summary.

    Raises:
        UsageError: overlapping or wrong-kind locations (before anything is written), or a stage
            that is not part of the pipeline.
        JobError: ``stage`` asked for before the stages it needs are complete.
        DataError, JobError, ...: a stage's own failure, after its failure is recorded in the state
            file (the next run resumes there).
    """
    if plan.run_date != run_date:  # the CLI builds the plan for the run date it passes
        raise UsageError(f"the pipeline was planned for {plan.run_date}, not {run_date}")
    if stage is not None and stage not in plan.stages:
        raise UsageError(f"--stage {stage}: not a stage of {plan.path} (stages: {', '.join(plan.stages)})")
    return _Runner(spark, settings, plan, force).run(stage)


def pipeline_locations(plan: P.Pipeline) -> tuple[list[Location], list[Location]]:
    """``(inputs, outputs)`` of every stage of ``plan`` (and the run folder's files)."""
    inputs = [Location("pipeline file", local_uri(plan.path), KIND_FILE)]
    outputs: list[Location] = []
    if plan.datasets is not None:
        inputs += [Location(f"[datasets] {k}", v) for k, v in plan.datasets.paths().items()]
        inputs += [Location("[datasets] schemas", local_uri(s), KIND_FILE) for s in plan.datasets.schemas]
    if plan.validate is not None:
        if plan.validate.rejects:
            outputs.append(Location("[validate] rejects", plan.validate.rejects, KIND_DELTA))
        outputs.append(Location("[validate] report", plan.validate.report, KIND_FILE))
    trained = set(plan.solutions_trained())
    for name in dict.fromkeys(plan.solutions_trained() + plan.solutions_used()):
        location = Location(f"[solutions.{name}] path", plan.solutions[name].path, KIND_SOLUTION)
        (outputs if name in trained else inputs).append(location)
    for name in P.BATCH_STAGES:
        if name not in plan.stages:
            continue
        b = plan.batch[name]
        if b.input:
            inputs.append(Location(f"[{name}] input", b.input))
        outputs.append(Location(f"[{name}] output", b.output, KIND_DELTA))
        if b.jsonl:
            outputs.append(Location(f"[{name}] jsonl", b.jsonl, KIND_FOLDER))
    outputs += [Location("run state file", plan.state_path, KIND_FILE),
                Location("run manifest", plan.manifest_path, KIND_FILE),
                Location("run success marker", plan.success_path, KIND_FILE)]
    return inputs, outputs


class _Runner:
    def __init__(self, spark, settings, plan: P.Pipeline, force: bool):
        self.spark = spark
        self.settings = settings
        self.plan = plan
        self.force = force
        self.started = time.perf_counter()
        self.state: dict[str, Any] = {}
        self.ran: list[str] = []
        self._previous: Optional[dict[str, float]] = None

    # -- the run -------------------------------------------------------------------------------

    def run(self, only: Optional[str]) -> dict:
        plan, spark = self.plan, self.spark
        check_locations(spark, *pipeline_locations(plan))
        complete = fs.exists(spark, plan.success_path)
        if complete and not self.force:
            log.info("run date %s is complete (%s exists); nothing to do (--force runs it again)",
                     plan.run_date, plan.success_path)
            self.state = self._read_state()
            return self._summary("already complete")
        self.state = self._read_state()
        stages = self.state["stages"]
        if self.force:  # run again; the attempts count on
            for name in ([only] if only else plan.stages):
                stages[name] = {"status": "pending", "attempts": stages.get(name, {}).get("attempts", 0)}
        if complete:  # --force: the marker goes first, so nobody reads a manifest being replaced
            fs.delete(spark, plan.success_path)
        if self.state.get("pipeline_sha256") not in (None, plan.digest) and any(
                self._done(s) for s in plan.stages):
            log.warning("the pipeline file changed since stages of %s completed; completed stages are "
                        "kept (--force runs them again)", plan.run_date)
        self.state["pipeline_sha256"] = plan.digest
        if only is not None:
            if self._done(only):
                log.info("stage %s of %s is complete; nothing to do (--force runs it again)", only,
                         plan.run_date)
                return self._finish(f"stage {only} already complete")
            missing = [p for p in P.prerequisites(plan, only) if not self._done(p)]
            if missing:
                raise JobError(f"stage {only} needs stage {', '.join(missing)} completed for "
                               f"{plan.run_date} first (state: {plan.state_path}); run "
                               f"'--stage {missing[0]}' or the whole pipeline")
        from batchrec.datasets.validation import shared_validation

        with shared_validation():  # validate and train read the datasets once
            for name in ([only] if only else plan.stages):
                if self._done(name):
                    log.info("stage=%s status=%s (completed by an earlier run of %s; kept)", name,
                             stages[name]["status"], plan.run_date)
                    continue
                self._run_stage(name)
        return self._finish(SUCCEEDED if only is None else f"stage {only} {stages[only]['status']}")

    def _finish(self, status: str) -> dict:
        if all(self._done(s) for s in self.plan.stages):
            manifest = self._manifest()
            fs.write_text_atomic(self.spark, self.plan.manifest_path,
                                 json.dumps(manifest, indent=2, default=str) + "\n")
            fs.write_text(self.spark, self.plan.success_path, "")
            log.info("run date %s complete: manifest %s", self.plan.run_date, self.plan.manifest_path)
        return self._summary(status)

    def _summary(self, status: str) -> dict:
        stages = self.state.get("stages", {})
        complete = fs.exists(self.spark, self.plan.success_path)
        return {"command": "run", "run_date": self.plan.run_date.isoformat(), "pipeline": self.plan.path,
                "status": status, "ran": list(self.ran),
                "stages": {s: stages.get(s, {}).get("status", "pending") for s in self.plan.stages},
                "manifest": self.plan.manifest_path if complete else None,
                "seconds": round(time.perf_counter() - self.started, 1)}

    def _done(self, name: str) -> bool:
        return self.state["stages"].get(name, {}).get("status") in COMPLETE

    def _run_stage(self, name: str) -> None:
        stages = self.state["stages"]
        attempts = stages.get(name, {}).get("attempts", 0) + 1
        info: dict[str, Any] = {"status": RUNNING, "attempts": attempts, "started_at": _now()}
        stages[name] = info
        self._write_state()
        log.info("stage=%s starting (run date %s, attempt %d)", name, self.plan.run_date, attempts)
        started = time.perf_counter()
        self.ran.append(name)
        stream = logs.LineLogger(logging.getLogger(f"batchrec.stage.{name}"), "")
        try:
            with logs.heartbeat(log, name, self.spark, self.plan.progress_seconds,
                                self._previous_seconds(name)), contextlib.redirect_stdout(stream):
                result = STAGE_FUNCTIONS[name](self)
            stream.flush()
        except BaseException as exc:
            stream.flush()
            info.update(status=FAILED, seconds=round(time.perf_counter() - started, 2),
                        finished_at=_now(), error=_one_line(exc))
            try:
                self._write_state()
            except Exception as write_error:  # the stage's failure is the one to report
                log.error("could not record the failure in %s: %s", self.plan.state_path, write_error)
            log.error("stage=%s status=failed run_date=%s: %s; completed stages are kept and the next "
                      "run resumes at %s", name, self.plan.run_date, _one_line(exc), name)
            raise
        status = result.pop("status", SUCCEEDED)
        info.update(status=status, seconds=round(time.perf_counter() - started, 2), finished_at=_now(),
                    summary=result)
        self._write_state()
        log.info("stage=%s status=%s seconds=%.1f %s", name, status, info["seconds"], _brief(name, result))

    # -- state ---------------------------------------------------------------------------------

    def _read_state(self) -> dict:
        fresh = {"format": STATE_FORMAT, "pipeline": self.plan.path, "run_date": self.plan.run_date.isoformat(),
                 "stages": {}}
        if not fs.exists(self.spark, self.plan.state_path):
            return fresh
        text = fs.read_text(self.spark, self.plan.state_path)
        try:
            state = json.loads(text)
            if not isinstance(state, dict) or not isinstance(state.get("stages"), dict):
                raise ValueError("no stages object")
        except ValueError as exc:
            raise JobError(f"corrupt run state file {self.plan.state_path} ({exc}); remove it to run "
                           f"every stage of {self.plan.run_date} again") from exc
        return {**fresh, **state}

    def _write_state(self) -> None:
        self.state["updated_at"] = _now()
        fs.write_text_atomic(self.spark, self.plan.state_path, json.dumps(self.state, indent=2, default=str) + "\n")

    def _summary_of(self, name: str) -> dict:
        return self.state["stages"].get(name, {}).get("summary") or {}

    def _previous_seconds(self, name: str) -> Optional[float]:
        """The stage's duration in the latest earlier complete run (the progress lines' estimate)."""
        if self._previous is None:
            self._previous = {}
            try:
                runs = self.plan.runs
                earlier = sorted((d for d in (fs.list_dirs(self.spark, runs) if fs.exists(self.spark, runs)
                                              else []) if _is_date(d) and d < self.plan.run_date.isoformat()),
                                 reverse=True)
                for day in earlier[:30]:
                    folder = fs.join(runs, day)
                    if fs.exists(self.spark, fs.join(folder, P.SUCCESS_FILE)):
                        manifest = json.loads(fs.read_text(self.spark, fs.join(folder, P.MANIFEST_FILE)))
                        self._previous = {s["name"]: s["seconds"] for s in manifest.get("stages", [])
                                          if s.get("status") == SUCCEEDED and s.get("seconds")}
                        break
            except Exception as exc:  # only an estimate
                log.debug("no previous run durations: %s", exc)
        return self._previous.get(name)

    # -- stages --------------------------------------------------------------------------------

    def _validate(self) -> dict:
        from batchrec.commands import validate

        d, v = self.plan.datasets, self.plan.validate
        return validate.run(self.spark, self.settings, self.plan.run_date, interactions=d.interactions,
                            items=d.items, users=d.users, data_format=d.format,
                            schemas=tuple(Path(s) for s in d.schemas), renames=d.renames,
                            rejects=v.rejects, report=v.report)

    def _train(self) -> dict:
        from batchrec.commands import train

        d, results = self.plan.datasets, {}
        for name in self.plan.solutions_trained():
            solution = self.plan.solutions[name]
            due, reason, version = P.train_due(solution, self.plan.run_date,
                                               _versions(self.spark, solution.path), self.force)
            if not due:
                log.info("train %s: not due: %s", name, reason)
                results[name] = {"trained": False, "reason": reason, "recipe": solution.recipe,
                                 "path": solution.path, "version": version,
                                 "version_run_date": _version_run_date(self.spark, solution.path, version)}
                continue
            log.info("train %s (%s): due: %s", name, solution.recipe, reason)
            with logs.stage(log, "train", solution=name):
                summary = train.run(self.spark, self.settings, self.plan.run_date, interactions=d.interactions,
                                    items=d.items, users=d.users, data_format=d.format,
                                    schemas=tuple(d.schemas), renames=d.renames, recipe=solution.recipe,
                                    solution=solution.path, params=solution.params, hpo=solution.hpo,
                                    evaluate=solution.evaluate)
            results[name] = {"trained": True, "reason": reason, "recipe": solution.recipe,
                             "path": solution.path, "version": summary["version"],
                             "version_run_date": self.plan.run_date.isoformat(),
                             **{k: summary.get(k) for k in ("interactions", "users", "items", "params",
                                                            "metrics")}}
        status = SUCCEEDED if any(r["trained"] for r in results.values()) else SKIPPED
        return {"status": status, "solutions": results}

    def _batch(self, name: str) -> dict:
        from batchrec.commands import recommend, related, segment

        b = self.plan.batch[name]
        solution = self.plan.solutions[b.solution]
        trained = self._summary_of(P.TRAIN).get("solutions", {}).get(b.solution)
        if trained and trained.get("version"):
            version, trained_for = trained["version"], trained.get("version_run_date")
        else:
            chosen = registry.load_version(self.spark, solution.path, registry.LATEST, run_date=self.plan.run_date)
            version, trained_for = chosen.version, chosen.metadata.get("run_date")
        common = dict(solution=solution.path, version=version, output=b.output, jsonl=b.jsonl,
                      input_path=b.input)
        fresher: dict[str, Any] = {}
        d = self.plan.datasets
        if d is not None and name != P.RELATED and (trained_for or "") < self.plan.run_date.isoformat():
            # A version trained for an earlier date has not seen the newer interactions: pass them,
            # so what users saw since then is excluded too.
            log.info("%s: version %s was trained for %s; excluding interactions seen since from %s",
                     name, version, trained_for, d.interactions)
            fresher = dict(interactions=d.interactions, items=d.items, data_format=d.format)
        module = {P.RECOMMEND: recommend, P.RELATED: related, P.SEGMENT: segment}[name]
        summary = module.run(self.spark, self.settings, self.plan.run_date, **common, **fresher)
        return {**summary, "solution_name": b.solution, "version_run_date": trained_for}

    def _export(self) -> dict:
        from batchrec.commands import export_dynamodb

        e, exports = self.plan.export, {}
        for source in e.sources:
            done = self._summary_of(source)
            with logs.stage(log, "export", source=source, table=e.table):
                exports[source] = export_dynamodb.run(
                    self.spark, self.settings, self.plan.run_date, input=self.plan.batch[source].output,
                    table=e.table, endpoint_url=e.endpoint_url, region=e.region, ttl_days=e.ttl_days,
                    create_table=e.create_table, solution=done.get("solution"),
                    allow_older_run=e.allow_older_run)
        return {"table": e.table, "items": sum(int(x.get("items") or 0) for x in exports.values()),
                "exports": exports}

    # -- the manifest --------------------------------------------------------------------------

    def _manifest(self) -> dict:
        plan, stages = self.plan, self.state["stages"]
        inputs: dict[str, Any] = {}
        rejects: dict[str, Any] = {}
        validated = self._summary_of(P.VALIDATE)
        if plan.datasets is not None:
            for kind, path in plan.datasets.paths().items():
                entry: dict[str, Any] = {"path": path, "format": plan.datasets.format}
                counted = (validated.get("datasets") or {}).get(kind)
                if counted:
                    entry.update(rows=counted.get("rows_read"), rows_valid=counted.get("rows_valid"),
                                 rows_rejected=counted.get("rows_rejected"),
                                 rows_after_run_date=counted.get("rows_after_run_date", 0))
                inputs[kind] = entry
        if validated:
            rejects = {"path": validated.get("rejects_path"),
                       "rows": sum(int(s.get("rows_rejected") or 0) for s in validated["datasets"].values()),
                       "by_dataset": {k: {"rows": s.get("rows_rejected"), "reasons": s.get("reasons", [])}
                                      for k, s in validated["datasets"].items()}}
        solutions: dict[str, Any] = {}
        trained = self._summary_of(P.TRAIN).get("solutions", {})
        for name in dict.fromkeys(plan.solutions_trained() + plan.solutions_used()):
            s = plan.solutions[name]
            t = trained.get(name, {})
            solutions[name] = {"path": s.path, "recipe": s.recipe, "version": t.get("version"),
                               "version_run_date": t.get("version_run_date"), "trained": t.get("trained", False),
                               "reason": t.get("reason"), "interactions": t.get("interactions")}
        outputs: dict[str, Any] = {}
        if plan.validate is not None:
            outputs["validation_report"] = {"path": plan.validate.report}
            if plan.validate.rejects:
                outputs["rejects"] = {"path": plan.validate.rejects, "rows": rejects.get("rows")}
        unusable: dict[str, int] = {}
        for name in P.BATCH_STAGES:
            if name not in plan.stages:
                continue
            s, b = self._summary_of(name), plan.batch[name]
            if b.input:
                inputs[f"{name}.input"] = {"path": b.input, "requests": s.get(REQUESTS[name]),
                                           "unusable_lines": s.get("errors")}
            unusable[name] = int(s.get("errors") or 0)
            if solutions.get(b.solution, {}).get("version") is None:
                solutions.setdefault(b.solution, {})["version"] = s.get("version")
            counted = {k: v for k, v in s.items() if k in ("users", "items", "segments", "requests")
                       or k.endswith("_with_results") or k.startswith("backfilled_")}
            outputs[name] = {"path": b.output, "rows": s.get("rows"), "jsonl": b.jsonl,
                             "solution": b.solution, "solution_version": s.get("version"), **counted}
        if plan.export is not None:
            e = self._summary_of(P.EXPORT)
            outputs[P.EXPORT] = {"table": plan.export.table, "items": e.get("items"),
                                 "by_source": {k: {"items": v.get("items"), "acknowledged": v.get("acknowledged")}
                                               for k, v in (e.get("exports") or {}).items()}}
        if unusable:
            rejects["unusable_input_lines"] = unusable
        return {
            "pipeline": plan.path, "pipeline_sha256": plan.digest, "run_date": plan.run_date.isoformat(),
            "status": SUCCEEDED, "batchrec_version": batchrec.__version__, "written_at": _now(),
            "spark": _spark_info(self.spark), "inputs": inputs, "solutions": solutions, "outputs": outputs,
            "rejects": rejects,
            "stages": [{"name": s, "status": stages[s]["status"], "seconds": stages[s].get("seconds"),
                        "attempts": stages[s].get("attempts"), "started_at": stages[s].get("started_at"),
                        "finished_at": stages[s].get("finished_at")} for s in plan.stages],
        }


STAGE_FUNCTIONS: dict[str, Callable[[_Runner], dict]] = {
    P.VALIDATE: _Runner._validate,
    P.TRAIN: _Runner._train,
    P.RECOMMEND: lambda runner: runner._batch(P.RECOMMEND),
    P.RELATED: lambda runner: runner._batch(P.RELATED),
    P.SEGMENT: lambda runner: runner._batch(P.SEGMENT),
    P.EXPORT: _Runner._export,
}


def _versions(spark, solution: str) -> list[tuple[str, Optional[str]]]:
    if not fs.exists(spark, solution):
        return []
    return [(v, registry.version_run_date(spark, solution, v)) for v in registry.list_versions(spark, solution)]


def _version_run_date(spark, solution: str, version: Optional[str]) -> Optional[str]:
    return registry.version_run_date(spark, solution, version) if version else None


def _brief(name: str, result: dict) -> str:
    """A few counts of a stage's result for its log line."""
    if name == P.TRAIN:
        return " ".join(f"{k}={'trained ' + str(v['version']) if v['trained'] else 'kept ' + str(v['version'])}"
                        for k, v in result.get("solutions", {}).items())
    keys = ("rows", "users", "items", "segments", "errors", "version", "passed")
    return " ".join(f"{k}={result[k]}" for k in keys if k in result and not isinstance(result[k], (dict, list)))


def _spark_info(spark) -> dict:
    try:
        context = spark.sparkContext
        return {"master": context.master, "application_id": context.applicationId, "version": spark.version}
    except Exception:  # pragma: no cover - a stopped session
        return {}


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
        return len(text) == 10
    except ValueError:
        return False


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _one_line(exc: BaseException) -> str:
    from batchrec.failures import one_line

    try:
        return one_line(exc)
    except Exception:  # pragma: no cover
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
