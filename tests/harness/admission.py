"""A ValidatingAdmissionPolicy evaluated as the API server would, with cel-python (`celpy`): its
variables in order (each sees the ones before it as `variables.<name>`), then each validation; a
validation whose expression is false refuses the request with its messageExpression. The API
emulator has no admission step, so the chart's CEL is checked here, against the operator's own
check, on the same cases."""

from __future__ import annotations

from typing import Any

import celpy
from celpy import celtypes


def _cel(value: Any) -> Any:
    return celpy.json_to_cel(value)


def _run(env: celpy.Environment, expression: str, activation: dict[str, Any]) -> Any:
    program = env.program(env.compile(expression))
    result = program.evaluate(activation)
    if isinstance(result, Exception):
        raise result
    return result


def refusals(
    policy: dict[str, Any],
    obj: dict[str, Any],
    namespace: str,
    username: str,
    old: dict[str, Any] | None = None,
) -> list[str]:
    """The messages of the validations of `policy` (a rendered ValidatingAdmissionPolicy) that refuse
    creating `obj` in `namespace` as `username` (or, given the `old` object, updating it to `obj`);
    empty when admitted."""
    env = celpy.Environment()
    operation = "CREATE" if old is None else "UPDATE"
    request = {"namespace": namespace, "operation": operation, "userInfo": {"username": username}}
    activation: dict[str, Any] = {"object": _cel(obj), "oldObject": _cel(old), "request": _cel(request)}
    variables: dict[str, Any] = {}
    for variable in policy["spec"].get("variables") or []:
        activation["variables"] = celtypes.MapType({celtypes.StringType(k): v for k, v in variables.items()})
        variables[variable["name"]] = _run(env, variable["expression"], activation)
    activation["variables"] = celtypes.MapType({celtypes.StringType(k): v for k, v in variables.items()})
    refused = []
    for validation in policy["spec"]["validations"]:
        if not bool(_run(env, validation["expression"], activation)):
            message = validation.get("messageExpression")
            refused.append(str(_run(env, message, activation)) if message else validation.get("message", ""))
    return refused
