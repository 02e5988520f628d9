"""Deployment configs parse and agree with each other (nothing here can be launched: no cloud, no Docker engine).

- ray_cluster.yaml: Ray's own JSON schema (ray/autoscaler/ray-schema.json) on the file as written, then
  Ray's own prepare_config + validate_config (what `ray up` runs before touching AWS).
- infra/prefect.yaml: Prefect's own prepare model (PrefectYamlModel, what `prefect deploy` loads),
  Prefect's schedule builder, the pull step's real signature, the process work pool's job variables.
- infra/kuberay-rayjob.yaml: structure against the field names of KubeRay's ray.io/v1 Go types.
- infra/Dockerfile: instruction-level checks (FROM first, no remote ADD, COPY sources exist, non-root).
- infra/docker-compose.yaml: structure; one image name and one work pool name across all files.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
RAY_CLUSTER = ROOT / "ray_cluster.yaml"
DOCKERFILE = INFRA / "Dockerfile"
RAYJOB = INFRA / "kuberay-rayjob.yaml"
PREFECT_YAML = INFRA / "prefect.yaml"
COMPOSE = INFRA / "docker-compose.yaml"
INFRA_README = INFRA / "README.md"

POOL = "slomo-gpu"
FLOW_FILE = ROOT / "flows" / "archive.py"
FLOW_PARAMETERS = {"input_prefix", "output_prefix", "videos_per_pool", "settings"}
SETTINGS = {"factor", "mode", "model", "workers", "gpus_per_worker", "ray_address"}
DEPLOYMENTS = {"convert-archive": "flows/archive.py:convert_archive", "backfill": "flows/archive.py:backfill"}
# Commands that fetch software; none may run when a node starts (everything is in the image).
DOWNLOADERS = re.compile(r"\b(pip3?|uv|conda|mamba|apt(-get)?|yum|dnf|curl|wget|git)\b")


def load_yaml(path: Path):
    with path.open() as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pinned(pyproject: dict, name: str) -> str:
    for requirement in pyproject["project"]["dependencies"]:
        match = re.fullmatch(rf"{re.escape(name)}(\[[^\]]*\])?==(\S+)", requirement.strip())
        if match:
            return match.group(2)
    raise AssertionError(f"{name} is not pinned with == in pyproject.toml")


@pytest.fixture(scope="module")
def cluster() -> dict:
    return load_yaml(RAY_CLUSTER)


@pytest.fixture(scope="module")
def rayjob() -> dict:
    return load_yaml(RAYJOB)


@pytest.fixture(scope="module")
def prefect_config() -> dict:
    return load_yaml(PREFECT_YAML)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


# ---------------------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    instructions, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored by Docker too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return instructions


def copy_sources(arguments: str) -> list[str] | None:
    """Sources of a COPY from the build context (None for COPY --from=stage)."""
    if arguments.startswith("["):
        parts = json.loads(arguments)
    else:
        parts = shlex.split(arguments)
    flags = [p for p in parts if p.startswith("--")]
    if any(f.startswith("--from=") for f in flags):
        return None
    paths = [p for p in parts if not p.startswith("--")]
    assert len(paths) >= 2, f"COPY needs a source and a destination: {arguments}"
    return paths[:-1]


def test_dockerfile_instructions_are_valid():
    instructions = dockerfile_instructions()
    known = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
             "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
    assert {keyword for keyword, _ in instructions} <= known
    first = next(keyword for keyword, _ in instructions if keyword != "ARG")
    assert first == "FROM", "only ARG may come before the first FROM"
    for keyword, arguments in instructions:
        assert not (keyword == "ADD" and re.search(r"https?://", arguments)), "no remote ADD: pin downloads in RUN"
        if keyword == "COPY":
            for source in copy_sources(arguments) or []:
                assert (ROOT / source).exists(), f"COPY source {source} is not in the repository"
        if keyword in {"CMD", "ENTRYPOINT"} and arguments.startswith("["):
            json.loads(arguments)  # exec form must be valid JSON


def test_dockerfile_image_contract():
    instructions = dockerfile_instructions()
    base = next(arguments for keyword, arguments in instructions if keyword == "FROM").split()[0]
    assert re.match(r"(docker\.io/library/)?python:3\.11[.-]|nvidia/cuda:", base), base
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "the image must run as a non-root user"
    assert any(keyword == "LABEL" and "org.opencontainers.image" in arguments for keyword, arguments in instructions)
    runs = " ".join(arguments for keyword, arguments in instructions if keyword == "RUN")
    assert "slomo --help" in runs, "the build must smoke-check the CLI"
    assert "pip install" in runs
    # Ray's cluster launcher syncs files with rsync through `docker exec` and its autoscaler SSHes into
    # workers; KubeRay's default probes call wget. All three must be in the image.
    for tool in ("rsync", "openssh-client", "wget"):
        assert re.search(rf"apt-get install[^&]*\b{tool}\b", runs), f"{tool} is not installed"
    env = " ".join(arguments for keyword, arguments in instructions if keyword == "ENV")
    assert re.search(r"\bHOME=/", env), "Ray's launcher reads HOME from the image's Config.Env"
    # `docker run IMAGE bash` (Ray launcher) must still start bash: no slomo entrypoint.
    entrypoints = [arguments for keyword, arguments in instructions if keyword == "ENTRYPOINT"]
    assert not entrypoints or "slomo" not in entrypoints[-1]


def test_dockerfile_installs_the_project_with_its_pins(pyproject):
    text = DOCKERFILE.read_text()
    assert re.search(r"^COPY pyproject\.toml ", text, re.MULTILINE), "dependencies must come from pyproject.toml's pins"
    for package in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = package.rstrip("*")
        assert f"COPY {package} {package}" in text, f"{package} is not copied into the image"
    assert pyproject["project"]["requires-python"].startswith(">=3.11"), "base image is Python 3.11"


# ---------------------------------------------------------------------------------------------------------
# infra/prefect.yaml


def test_prefect_yaml_loads_with_prefects_model(prefect_config):
    from prefect.cli.deploy._models import PrefectYamlModel

    model = PrefectYamlModel.model_validate(prefect_config)
    assert {d.name for d in model.deployments} == set(DEPLOYMENTS)
    for deployment in model.deployments:
        assert deployment.entrypoint == DEPLOYMENTS[deployment.name]
        assert deployment.work_pool is not None and deployment.work_pool.name == POOL
        assert set(deployment.parameters) == FLOW_PARAMETERS, deployment.name
        assert set(deployment.parameters["settings"]) == SETTINGS, deployment.name
    import prefect

    assert prefect_config["prefect-version"] == prefect.__version__


def test_prefect_schedules_build(prefect_config):
    from prefect.cli.deploy._models import RawScheduleConfig
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule
    from prefect.client.schemas.schedules import CronSchedule

    by_name = {d["name"]: d for d in prefect_config["deployments"]}
    nightly = by_name["convert-archive"]["schedules"]
    assert nightly and all("cron" in s for s in nightly), "convert-archive runs on a cron schedule"
    for schedule in nightly:
        RawScheduleConfig.model_validate(schedule)  # extra="forbid": catches misspelt keys
        built = _schedule_config_to_deployment_schedule(schedule)  # what `prefect deploy` sends
        assert isinstance(built["schedule"], CronSchedule)
    assert not by_name["backfill"].get("schedules"), "backfill runs on demand only"


def test_prefect_concurrency_and_pool_variables(prefect_config):
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.workers.process import ProcessWorker

    variables = set(ProcessWorker.get_default_base_job_template()["variables"]["properties"])
    for deployment in prefect_config["deployments"]:
        limit = deployment.get("concurrency_limit")
        if isinstance(limit, dict):
            ConcurrencyLimitConfig.model_validate(limit)
        job_variables = deployment["work_pool"].get("job_variables") or {}
        assert set(job_variables) <= variables, f"not a process work pool variable: {set(job_variables) - variables}"


def test_prefect_pull_step_matches_the_image(prefect_config):
    (step,) = prefect_config["pull"]
    ((qualified_name, kwargs),) = step.items()
    module_name, _, function_name = qualified_name.rpartition(".")
    assert function_name == "set_working_directory"
    function = getattr(importlib.import_module(module_name), function_name)
    inspect.signature(function).bind(**kwargs)  # the step's arguments are the function's
    # The image keeps the sources there: `WORKDIR <directory>`, then relative COPYs of the packages.
    text = DOCKERFILE.read_text()
    assert f"WORKDIR {kwargs['directory']}\n" in text, "the pull step must enter the image's source directory"
    assert text.index(f"WORKDIR {kwargs['directory']}") < text.index("COPY flows flows")


def flow_functions(path: Path) -> dict[str, tuple[ast.FunctionDef | ast.AsyncFunctionDef, str | None]]:
    """Top-level @flow functions of a file, without importing it: name -> (definition, name= given to @flow)."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for decorator in node.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            if (target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")) != "flow":
                continue
            keywords = decorator.keywords if isinstance(decorator, ast.Call) else []
            given = next((k.value.value for k in keywords if k.arg == "name" and isinstance(k.value, ast.Constant)), None)
            found[node.name] = (node, given)
    return found


def test_prefect_entrypoints_exist_with_these_parameters(prefect_config):
    for entrypoint in DEPLOYMENTS.values():
        path, _, function = entrypoint.partition(":")
        assert path.startswith("flows/") and path.endswith(".py") and function.isidentifier()
    if not FLOW_FILE.exists():
        pytest.skip("flows/archive.py is not written yet: entrypoints checked for form only")
    flows = flow_functions(FLOW_FILE)
    for deployment in prefect_config["deployments"]:
        function = deployment["entrypoint"].partition(":")[2]
        assert function in flows, f"flows/archive.py has no @flow {function}"
        node, flow_name = flows[function]
        # infra/README.md runs `prefect deployment run '<flow name>/<deployment name>'` with Prefect's default
        # flow name (function name, _ -> -), which is also the deployment's name.
        assert (flow_name or function.replace("_", "-")) == deployment["name"], f"flow name of {function}"
        arguments = node.args
        positional = arguments.posonlyargs + arguments.args
        names = {a.arg for a in positional + arguments.kwonlyargs}
        given = set(deployment["parameters"])
        if arguments.kwarg is None:
            assert given <= names, f"{function} has no parameter {given - names}"
        required = {a.arg for a in positional[: len(positional) - len(arguments.defaults)]}
        required |= {a.arg for a, default in zip(arguments.kwonlyargs, arguments.kw_defaults) if default is None}
        assert required <= given, f"the deployment does not set required parameters {required - given} of {function}"


def test_prefect_parameter_values_are_cli_values(prefect_config):
    from flows.cli import build_parser

    convert = next(a for a in build_parser()._actions if a.dest == "command").choices["convert"]
    choices = {a.dest: a.choices for a in convert._actions if a.choices}
    for deployment in prefect_config["deployments"]:
        parameters = deployment["parameters"]["settings"]
        assert parameters["mode"] in choices["mode"]
        assert parameters["model"] in choices["model"]
        assert isinstance(parameters["factor"], int) and parameters["factor"] >= 2
        assert isinstance(parameters["workers"], int) and parameters["workers"] >= 1
        assert parameters["ray_address"] == "auto" or parameters["ray_address"].startswith("ray://")


def test_prefect_parameters_validate_against_the_flows(prefect_config):
    """Prefect's own parameter validation, as a deployment run does it: the settings mapping becomes the
    flows' ConversionSettings, `-p settings='{"factor": 8}'` replaces it, and a bad value is refused."""
    from prefect.exceptions import ParameterTypeError

    import flows.archive
    from slomo_core.settings import ConversionSettings

    for deployment in prefect_config["deployments"]:
        flow = getattr(flows.archive, deployment["entrypoint"].partition(":")[2])
        validated = flow.validate_parameters(deployment["parameters"])
        assert isinstance(validated["settings"], ConversionSettings)
        assert validated["settings"].factor == deployment["parameters"]["settings"]["factor"]
        override = flow.validate_parameters({**deployment["parameters"], "settings": json.loads('{"factor": 8}')})
        assert override["settings"].factor == 8 and override["settings"].workers == 1
        with pytest.raises(ParameterTypeError, match="factor"):
            flow.validate_parameters({**deployment["parameters"], "settings": {"factor": 1}})
        with pytest.raises(ParameterTypeError, match="facter"):
            flow.validate_parameters({**deployment["parameters"], "settings": {"facter": 4}})


# ---------------------------------------------------------------------------------------------------------
# ray_cluster.yaml


# `ray up` validation runs in its own interpreter, started when this module's first test starts, so that
# importing Ray (~1 s here) overlaps with importing Prefect (~3 s) in the Prefect tests above.
_RAY_UP_CHECK = r"""
import copy, json, sys
from pathlib import Path
import yaml
result = {}
try:
    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config
except ImportError as exc:
    print(json.dumps({"skip": f"{type(exc).__name__}: {exc}"}))
    sys.exit(0)
config = yaml.safe_load(open(sys.argv[1]))
schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
try:
    jsonschema.validate(config, schema)
    result["schema_error"] = None
except jsonschema.ValidationError as exc:
    result["schema_error"] = str(exc)[:3000]
try:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    result.update(prepare_error=None, prepared=prepared)
except Exception as exc:
    result["prepare_error"] = f"{type(exc).__name__}: {exc}"[:3000]
print(json.dumps(result, default=str))
"""


@pytest.fixture(scope="module", autouse=True)
def _ray_up_check_process():
    process = subprocess.Popen(
        [sys.executable, "-c", _RAY_UP_CHECK, str(RAY_CLUSTER)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
    process.communicate()


@pytest.fixture(scope="module")
def ray_up_check(_ray_up_check_process) -> dict:
    stdout, stderr = _ray_up_check_process.communicate(timeout=120)
    assert _ray_up_check_process.returncode == 0, stderr[-3000:]
    result = json.loads(stdout.strip().splitlines()[-1])
    if "skip" in result:
        pytest.skip(f"Ray's cluster-config validation is not importable: {result['skip']}")
    return result


def test_ray_cluster_matches_ray_schema(ray_up_check):
    """ray/autoscaler/ray-schema.json of the installed Ray, on the file as written: no unknown fields."""
    assert ray_up_check["schema_error"] is None, ray_up_check["schema_error"]


def test_ray_cluster_passes_ray_up_preparation(ray_up_check, cluster):
    """What `ray up` does before it calls AWS: merge Ray's AWS defaults (prepare_config), validate the result."""
    assert ray_up_check["prepare_error"] is None, ray_up_check["prepare_error"]
    prepared = ray_up_check["prepared"]
    # Keys left out are filled from Ray's AWS defaults, which pip-install Ray and boto3 on every node.
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands"):
        assert prepared[key] == [], f"{key} must be empty: everything is baked into the image"
    started = prepared["initialization_commands"] + prepared["head_start_ray_commands"] + prepared["worker_start_ray_commands"]
    for command in started:  # a `docker login` for a private registry is fine; installing software is not
        assert not DOWNLOADERS.search(command), f"node start-up downloads something: {command}"
    assert prepared["docker"]["image"] == cluster["docker"]["image"]
    assert prepared["available_node_types"][prepared["head_node_type"]]["max_workers"] == 0


def test_ray_cluster_head_runs_no_work_and_workers_have_one_gpu(cluster):
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert head["resources"].get("CPU") == 0
    assert "GPU" not in head["resources"]
    head_start = " ".join(cluster["head_start_ray_commands"])
    assert "--num-cpus=0" in head_start and "--head" in head_start
    assert 0 < cluster["idle_timeout_minutes"] <= 30
    workers = {name: spec for name, spec in types.items() if name != cluster["head_node_type"]}
    assert workers, "no worker node type"
    for name, spec in workers.items():
        assert spec["resources"].get("GPU") == 1, f"{name}: one GPU per worker node"
        assert spec.get("min_workers", 0) == 0, f"{name}: GPU workers must scale from zero"
        assert 0 < spec["max_workers"] <= cluster["max_workers"]
        run_options = spec.get("docker", {}).get("worker_run_options", []) + cluster["docker"].get("run_options", [])
        assert any("--gpus" in option for option in run_options), f"{name}: the container must see the GPU"
        instance = spec["node_config"]["InstanceType"]
        assert re.match(r"(g4dn|g5|g6|g6e|p3|p4d|p5)\.", instance), f"{name}: {instance} is not a GPU instance"
    assert cluster["provider"]["type"] == "aws"
    assert cluster["docker"]["pull_before_run"] is True


# ---------------------------------------------------------------------------------------------------------
# infra/kuberay-rayjob.yaml (field names from KubeRay's ray-operator/apis/ray/v1 Go types)

RAYJOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
    "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint", "runtimeEnvYAML",
    "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus", "entrypointNumGpus",
    "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend", "schedule",
}
RAYCLUSTER_SPEC_FIELDS = {
    "headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling", "autoscalerOptions",
    "headServiceAnnotations", "suspend", "gcsFaultToleranceOptions", "managedBy",
}
HEAD_GROUP_FIELDS = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
WORKER_GROUP_FIELDS = {
    "groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams", "template",
    "scaleStrategy", "suspend", "idleTimeoutSeconds",
}
AUTOSCALER_FIELDS = {
    "resources", "image", "imagePullPolicy", "env", "envFrom", "volumeMounts", "securityContext",
    "idleTimeoutSeconds", "upscalingMode", "version",
}


def containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def secret_env(container: dict) -> dict[str, tuple[str, str]]:
    return {
        item["name"]: (item["valueFrom"]["secretKeyRef"]["name"], item["valueFrom"]["secretKeyRef"]["key"])
        for item in container.get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }


def test_rayjob_structure(rayjob, pyproject):
    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", rayjob["metadata"]["name"])
    spec = rayjob["spec"]
    assert set(spec) <= RAYJOB_SPEC_FIELDS, set(spec) - RAYJOB_SPEC_FIELDS
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] > 0
    assert spec.get("submissionMode", "K8sJobMode") in {"K8sJobMode", "HTTPMode", "InteractiveMode"}
    cluster_spec = spec["rayClusterSpec"]
    assert set(cluster_spec) <= RAYCLUSTER_SPEC_FIELDS, set(cluster_spec) - RAYCLUSTER_SPEC_FIELDS
    assert cluster_spec["rayVersion"] == pinned(pyproject, "ray")
    assert cluster_spec["enableInTreeAutoscaling"] is True
    assert set(cluster_spec.get("autoscalerOptions", {})) <= AUTOSCALER_FIELDS
    assert cluster_spec.get("autoscalerOptions", {}).get("upscalingMode", "Default") in {"Default", "Aggressive", "Conservative"}
    head = cluster_spec["headGroupSpec"]
    assert set(head) <= HEAD_GROUP_FIELDS
    groups = [head] + cluster_spec["workerGroupSpecs"]
    for group in groups:  # rayStartParams is map[string]string: unquoted numbers are rejected by the API
        assert all(isinstance(value, str) for value in group["rayStartParams"].values()), group["rayStartParams"]
        for container in containers(group["template"]):
            for section in ("requests", "limits"):
                for value in container.get("resources", {}).get(section, {}).values():
                    assert isinstance(value, (str, int)) and not isinstance(value, bool)


def test_rayjob_head_has_no_work_and_workers_one_gpu(rayjob):
    cluster_spec = rayjob["spec"]["rayClusterSpec"]
    head = cluster_spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    for container in containers(head["template"]):
        resources = container.get("resources", {})
        assert "nvidia.com/gpu" not in {**resources.get("requests", {}), **resources.get("limits", {})}
    assert cluster_spec["workerGroupSpecs"], "no worker group"
    for group in cluster_spec["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP_FIELDS, set(group) - WORKER_GROUP_FIELDS
        assert group["minReplicas"] == 0, "GPU workers autoscale from zero"
        assert group["maxReplicas"] >= 1 and 0 <= group.get("replicas", 0) <= group["maxReplicas"]
        (container,) = containers(group["template"])
        limits, requests = container["resources"]["limits"], container["resources"].get("requests", {})
        assert int(limits["nvidia.com/gpu"]) == 1, "one GPU per worker pod"
        assert int(requests.get("nvidia.com/gpu", 1)) == 1, "extended resources: requests must equal limits"


def test_rayjob_entrypoint_and_credentials(rayjob):
    spec = rayjob["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "slomo" or argv[:3] == ["python", "-m", "flows"], argv
    assert "--ray-address" in argv and argv[argv.index("--ray-address") + 1] == "auto"
    cluster_spec = spec["rayClusterSpec"]
    pods = [cluster_spec["headGroupSpec"]["template"]] + [g["template"] for g in cluster_spec["workerGroupSpecs"]]
    envs = [secret_env(container) for pod in pods for container in containers(pod)]
    for env in envs:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert name in env and env[name][1] == name, f"{name} must come from a Secret"
    assert all(env == envs[0] for env in envs), "head and workers must read the same credentials"
    assert len({secret for env in envs for secret, _ in env.values()}) == 1


def test_rayjob_entrypoint_parses_with_the_cli(rayjob):
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    if argv[0] != "slomo":
        pytest.skip("entrypoint is not the slomo CLI")
    from flows.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    if argv[1] not in commands:
        pytest.skip(f"`slomo {argv[1]}` is not in flows/cli.py yet")
    try:
        parser.parse_args(argv[1:])
    except SystemExit as exc:  # argparse reports the bad option on stderr
        pytest.fail(f"slomo rejects the RayJob entrypoint (exit {exc.code}): {' '.join(argv)}")


# ---------------------------------------------------------------------------------------------------------
# infra/docker-compose.yaml


def test_compose_stack(compose, pyproject):
    services = compose["services"]
    server = services["prefect-server"]
    assert server["image"].startswith(f"prefecthq/prefect:{pinned(pyproject, 'prefect')}-python3.11")
    assert "127.0.0.1:4200:4200" in server["ports"]
    assert "server" in server["command"] and "start" in server["command"]
    worker = services["slomo-worker"]
    assert (ROOT / "infra" / worker["build"]["context"] / worker["build"]["dockerfile"]).resolve() == DOCKERFILE
    command = " ".join(worker["command"]) if isinstance(worker["command"], list) else worker["command"]
    assert f"--pool {POOL}" in command and "ray start --head" in command
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert any(str(p).startswith("127.0.0.1:8265:") for p in worker["ports"])
    for name, service in services.items():  # published on the host's loopback only: no open dashboards
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every host interface"
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"


# ---------------------------------------------------------------------------------------------------------
# Across files


def test_one_image_everywhere(cluster, rayjob, compose, pyproject):
    cluster_spec = rayjob["spec"]["rayClusterSpec"]
    pods = [cluster_spec["headGroupSpec"]["template"]] + [g["template"] for g in cluster_spec["workerGroupSpecs"]]
    images = {
        "ray_cluster.yaml": cluster["docker"]["image"],
        **{f"kuberay-rayjob.yaml:{c['name']}": c["image"] for pod in pods for c in containers(pod)},
        "docker-compose.yaml": compose["services"]["slomo-worker"]["image"],
    }
    assert len(set(images.values())) == 1, images
    image = cluster["docker"]["image"]
    repository, _, tag = image.rpartition(":")
    assert repository.endswith("/slomo") and tag == pyproject["project"]["version"], image
    readme = INFRA_README.read_text()
    assert image in readme and image in DOCKERFILE.read_text()


def test_one_pool_name(prefect_config, compose):
    pools = {d["work_pool"]["name"] for d in prefect_config["deployments"]}
    assert pools == {POOL}
    assert f"prefect work-pool create {POOL}" in INFRA_README.read_text()


def test_infra_readme_covers_every_config():
    readme = INFRA_README.read_text()
    for path in (DOCKERFILE, RAY_CLUSTER, RAYJOB, PREFECT_YAML, COMPOSE):
        assert path.name in readme, f"{path.name} is not documented in infra/README.md"
    for link in re.findall(r"\]\(([^)#]+)\)", readme):
        if "://" not in link:
            assert (INFRA / link).exists(), f"broken link in infra/README.md: {link}"
    for command in (
        "prefect server start",
        "PREFECT_API_URL",
        "ray start --head --dashboard-host 127.0.0.1",
        "--ray-address auto",
        "8265",
        "docker build",
        "docker push",
        "ray up -y ray_cluster.yaml",
        "ray job submit",
        "kubectl apply -f infra/kuberay-rayjob.yaml",
        "prefect deploy --prefect-file infra/prefect.yaml",
        "prefect worker start --pool slomo-gpu",
    ):
        assert command in readme, f"infra/README.md lacks `{command}`"


def test_dashboards_are_reached_through_tunnels_never_open(cluster, rayjob):
    """The cluster head's dashboard listens on loopback (reached with `ray dashboard`, an SSH tunnel); the
    RayJob's listens in-cluster only and says so; the README says how each is reached."""
    head = " ".join(str(c) for c in cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    assert "ray dashboard ray_cluster.yaml" in RAY_CLUSTER.read_text()
    text = RAYJOB.read_text()
    host_line = next(n for n, line in enumerate(text.splitlines()) if "dashboard-host" in line)
    comment = " ".join(text.splitlines()[host_line - 3 : host_line])
    assert "kubectl port-forward" in comment and "never" in comment
    assert all(service.get("spec", {}).get("type") not in ("LoadBalancer", "NodePort")
               for service in [rayjob.get("spec", {}).get("rayClusterSpec", {}).get("headGroupSpec", {})
                               .get("headService", {})])
    readme = INFRA_README.read_text()
    for phrase in ("ssh -L 4200:127.0.0.1:4200", "ray dashboard ray_cluster.yaml", "kubectl port-forward",
                   "127.0.0.1 only"):
        assert phrase in readme, phrase
