"""Drives a running sgde service through a client generated from openapi/openapi.json.

Run by tests/generated_client.rs after `openapi-python-client generate` wrote the `sgde_client`
package onto PYTHONPATH. Only the generated client talks to the service: this script never
builds a URL, a header or a JSON body by hand. The client raises on any status the document does
not declare, so an undocumented answer fails the run too.

Flow: an unauthenticated call (401 problem) -> create the model endpoint -> create the workflow
from examples/ (its content hash must survive the generated models' round trip) -> read the
version back -> execute (twice with one Idempotency-Key: one execution) -> execute with invalid
inputs (422 problem with JSON pointers) -> submit an async run -> poll it until it finishes ->
list the executions -> submit a one-iteration compile job -> poll it until it finishes, reading
its typed progress and estimate -> read its iteration log -> list compile jobs page by page. The
last line of stdout is a JSON summary; the exit status is 0 only if every step held.
"""

import argparse
import json
import sys
import time
import uuid

from sgde_client import AuthenticatedClient, Client
from sgde_client.api.compile_jobs import get_compile_job, list_compile_jobs, list_iterations, submit_compile_job
from sgde_client.api.endpoints import create_endpoint, get_endpoint
from sgde_client.api.execute import execute
from sgde_client.api.executions import list_executions
from sgde_client.api.runs import get_run, submit_run
from sgde_client.api.system import healthz
from sgde_client.api.versions import get_version
from sgde_client.api.workflows import create_workflow, list_workflows
from sgde_client.models import (
    Budget,
    CompileJob,
    EndpointConfig,
    Example,
    ExampleInputs,
    ItemsIterationRecord,
    IterationOutcomeRejected,
    IterationOutcomeAccepted,
    JobStatus,
    MetricNumeric,
    MetricNumericKind,
    PagedCompileJob,
    StopReason,
    SubmitCompileJob,
    ExecuteRequest,
    ExecuteRequestInputs,
    ExecuteResponse,
    Execution,
    ExecutionStatus,
    PagedExecution,
    Problem,
    RunRequest,
    RunRequestInputs,
    StructuredOutput,
    Version,
    WorkflowSpec,
    WorkflowWithVersion,
    CreateWorkflow,
    Endpoint,
)

FINISHED = {ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
COMPILE_FINISHED = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}


def step(name):
    print(f"step: {name}", flush=True)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def expect(response, status, kind):
    """The parsed body of a response that must have `status` and parse as `kind`."""
    body = response.content.decode("utf-8", "replace")
    check(response.status_code == status, f"expected HTTP {status}, got {response.status_code}: {body}")
    check(isinstance(response.parsed, kind), f"expected a {kind.__name__}, got {type(response.parsed).__name__}: {body}")
    return response.parsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--model-base-url", required=True)
    parser.add_argument("--teacher-base-url", required=True)
    parser.add_argument("--compile-train", required=True, help="training examples, a JSON list")
    parser.add_argument("--workflow-file", required=True)
    parser.add_argument("--question", required=True)
    parser.add_argument("--expected-answer", required=True, type=float)
    parser.add_argument("--content-hash", required=True)
    parser.add_argument("--poll-timeout-secs", type=float, default=120.0)
    args = parser.parse_args()

    anonymous = Client(base_url=args.base_url, raise_on_unexpected_status=True)
    client = AuthenticatedClient(
        base_url=args.base_url, token=args.token, raise_on_unexpected_status=True, timeout=120.0
    )

    step("health, without a key")
    health = healthz.sync_detailed(client=anonymous)
    check(health.status_code == 200 and health.parsed.status == "ok", f"healthz: {health.content!r}")

    step("a /v1 call without a key is a 401 problem")
    # The generated signature wants an AuthenticatedClient; give it one with a wrong token.
    stranger = AuthenticatedClient(base_url=args.base_url, token="not-a-key", raise_on_unexpected_status=True)
    problem = expect(list_workflows.sync_detailed(client=stranger), 401, Problem)
    check(problem.code == "unauthorized", f"401 code: {problem.code}")

    step("create the model endpoint")
    config = EndpointConfig(
        name="student",
        base_url=args.model_base_url,
        model="sgde-student",
        structured_output=StructuredOutput.JSON_OBJECT,
        timeout_ms=30_000,
    )
    endpoint = expect(create_endpoint.sync_detailed(client=client, body=config), 201, Endpoint)
    check(endpoint.name == "student", f"endpoint name {endpoint.name}")
    check(endpoint.config.structured_output == StructuredOutput.JSON_OBJECT, "structured_output round trip")
    again = expect(get_endpoint.sync_detailed("student", client=client), 200, Endpoint)
    check(again.config.max_concurrency == 8, f"default max_concurrency: {again.config.max_concurrency}")

    step("create the workflow from examples/")
    with open(args.workflow_file, encoding="utf-8") as f:
        spec = WorkflowSpec.from_dict(json.load(f))
    request = CreateWorkflow(name="gsm", description="from the generated client", spec=spec)
    created = expect(create_workflow.sync_detailed(client=client, body=request), 201, WorkflowWithVersion)
    check(created.version.number == 1, f"first version number {created.version.number}")
    check(
        created.version.content_hash == args.content_hash,
        f"the spec changed on its way through the generated models: hash {created.version.content_hash}, "
        f"expected {args.content_hash}",
    )
    latest = expect(get_version.sync_detailed("gsm", "latest", client=client), 200, Version)
    check(latest.id == created.version.id, "latest version is the created one")
    # The stored spec parses back into the generated models, recursive sub-graph included.
    stored = WorkflowSpec.from_dict(latest.spec)
    solve = stored.nodes["solve"]
    check(type(solve).__name__ == "ConsensusNode", f"`solve` parsed as {type(solve).__name__}")
    check(sorted(solve.body.nodes.additional_keys) == ["program", "run"], "consensus body nodes")

    step("execute synchronously (twice with one Idempotency-Key)")
    inputs = {"question": args.question}
    body = ExecuteRequest(inputs=ExecuteRequestInputs.from_dict(inputs), trace=True)
    key = str(uuid.uuid4())
    result = expect(execute.sync_detailed("gsm", client=client, body=body, idempotency_key=key), 200, ExecuteResponse)
    output = result.output.to_dict() if hasattr(result.output, "to_dict") else result.output
    check(float(output) == args.expected_answer, f"execute output {output!r}, expected {args.expected_answer}")
    check(result.version.number == 1, f"version used {result.version.number}")
    check(result.usage.prompt_tokens > 0, "usage is accounted")
    check(result.trace is not None, "trace requested and returned")
    replay = expect(execute.sync_detailed("gsm", client=client, body=body, idempotency_key=key), 200, ExecuteResponse)
    check(replay.execution_id == result.execution_id, "an Idempotency-Key replay answers the same execution")

    step("invalid inputs are a 422 problem with pointers")
    bad = ExecuteRequest(inputs=ExecuteRequestInputs.from_dict({"question": ""}))
    problem = expect(execute.sync_detailed("gsm", client=client, body=bad), 422, Problem)
    pointers = [e.pointer for e in problem.errors] if problem.errors else []
    check(any(p.startswith("/inputs") for p in pointers), f"pointers {pointers}")

    step("submit an async run and poll it")
    run = expect(
        submit_run.sync_detailed(client=client, body=RunRequest(workflow="gsm", inputs=RunRequestInputs.from_dict(inputs))),
        202,
        Execution,
    )
    check(run.status in (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING, ExecutionStatus.SUCCEEDED), f"{run.status}")
    deadline = time.monotonic() + args.poll_timeout_secs
    polls = 0
    while True:
        polls += 1
        run = expect(get_run.sync_detailed(run.id, client=client), 200, Execution)
        if run.status in FINISHED:
            break
        check(time.monotonic() < deadline, f"run {run.id} still {run.status} after {args.poll_timeout_secs}s")
        time.sleep(0.1)
    check(run.status == ExecutionStatus.SUCCEEDED, f"run {run.id} ended {run.status}: {run.error}")
    check(float(run.output) == args.expected_answer, f"run output {run.output!r}, expected {args.expected_answer}")

    step("list the executions")
    page = expect(list_executions.sync_detailed(client=client, workflow="gsm", limit=10), 200, PagedExecution)
    ids = {e.id for e in page.items}
    check({result.execution_id, run.id} <= ids, f"executions listed: {sorted(map(str, ids))}")

    step("compile a workflow with the teacher: typed progress, estimate and iteration log")
    teacher = EndpointConfig(
        name="teacher",
        base_url=args.teacher_base_url,
        model="sgde-teacher",
        structured_output=StructuredOutput.JSON_OBJECT,
        timeout_ms=30_000,
    )
    expect(create_endpoint.sync_detailed(client=client, body=teacher), 201, Endpoint)
    compile_request = SubmitCompileJob(
        workflow="compiled",
        task="Solve arithmetic word problems.",
        train=[
            Example(inputs=ExampleInputs.from_dict(e["inputs"]), expected=e["expected"])
            for e in json.loads(args.compile_train)
        ],
        metric=MetricNumeric(kind=MetricNumericKind.NUMERIC, tolerance=1e-6),
        teacher="teacher",
        student="student",
        budget=Budget(max_iterations=1),
        seed=1,
    )
    job = expect(submit_compile_job.sync_detailed(client=client, body=compile_request), 202, CompileJob)
    compile_deadline = time.monotonic() + args.poll_timeout_secs
    check(job.estimate.first_iteration.teacher_calls == 2, f"estimate {job.estimate.to_dict()}")
    while job.status not in COMPILE_FINISHED:
        check(time.monotonic() < compile_deadline, f"compile job {job.id} still {job.status}")
        time.sleep(0.1)
        job = expect(get_compile_job.sync_detailed(job.id, client=client), 200, CompileJob)
    check(job.status == JobStatus.SUCCEEDED, f"compile job ended {job.status}: {job.stop_detail} {job.error}")
    check(job.stop_reason == StopReason.BUDGET, f"stop reason {job.stop_reason}")
    check(job.progress.teacher_calls == 2, f"progress {job.progress.to_dict()}")
    check(len(job.progress.score_history) == 2, f"score history {job.progress.score_history}")
    log = expect(list_iterations.sync_detailed(job.id, client=client), 200, ItemsIterationRecord)
    check(len(log.items) == 1, f"iterations {len(log.items)}")
    record = log.items[0]
    check(record.critiques[0].node == "answer", f"critique {record.critiques[0].to_dict()}")
    edit = record.attempts[0].edits[0]
    check(type(edit.op).__name__ == "EditOpSetPrompt", f"edit parsed as {type(edit.op).__name__}")
    check(
        isinstance(record.outcome, (IterationOutcomeAccepted, IterationOutcomeRejected)),
        f"outcome parsed as {type(record.outcome).__name__}",
    )
    check(record.usage.teacher.calls == 2, f"iteration usage {record.usage.to_dict()}")
    first = expect(list_compile_jobs.sync_detailed(client=client, limit=1), 200, PagedCompileJob)
    check([j.id for j in first.items] == [job.id], "the compile job is listed")
    check(not first.next_cursor, f"one job, one page: {first.next_cursor}")

    summary = {
        "ok": True,
        "endpoint": endpoint.name,
        "workflow": created.workflow.name,
        "content_hash": created.version.content_hash,
        "execute_output": output,
        "run_id": str(run.id),
        "run_status": str(run.status),
        "run_output": run.output,
        "polls": polls,
        "executions_listed": len(page.items),
        "compile_stop_reason": str(job.stop_reason),
        "compile_iterations": len(log.items),
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
