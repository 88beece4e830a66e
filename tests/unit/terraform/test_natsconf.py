"""tessera_ops.natsconf.render: the part of Terraform's template language region.conf.tftpl
may use, with Terraform's semantics, and nothing more."""

from __future__ import annotations

from pathlib import Path

import pytest

from tessera_ops import natsconf
from tessera_ops.natsconf import TemplateError, render, template_variables


def test_interpolation_of_strings_numbers_and_attributes() -> None:
    text = 'a: "${name}" n: ${count} deep: ${p.users.writer.x}'
    variables = {"name": "hub-1", "count": 1 << 40, "p": {"users": {"writer": {"x": "w"}}}}
    assert render(text, variables) == 'a: "hub-1" n: 1099511627776 deep: w'


def test_if_else_and_for_keep_text_verbatim() -> None:
    text = (
        'x\n%{ if hub }\nH\n%{ else }\nR\n%{ endif }\n[%{ for s in subjects }"${s}", %{ endfor }]\n'
    )
    hub = render(text, {"hub": True, "subjects": ["a.>", "$KV.b.>"]})
    assert hub == 'x\n\nH\n\n["a.>", "$KV.b.>", ]\n'
    region = render(text, {"hub": False, "subjects": []})
    assert region == "x\n\nR\n\n[]\n"


def test_nested_directives_and_loop_variables() -> None:
    text = "%{ for r in routes }%{ if tls }${r};%{ endif }%{ endfor }"
    assert render(text, {"routes": ["a", "b"], "tls": True}) == "a;b;"
    assert render(text, {"routes": ["a", "b"], "tls": False}) == ""
    assert template_variables(text) == {"routes", "tls"}  # `r` is the loop's own


def test_escapes_and_plain_dollar_signs() -> None:
    text = "password: $TESSERA_NATS_READER_PASSWORD lit: $${x} %%{ y } $JS.API.> 100%"
    assert (
        render(text, {})
        == "password: $TESSERA_NATS_READER_PASSWORD lit: ${x} %{ y } $JS.API.> 100%"
    )


def test_every_named_variable_is_required_even_in_a_branch_not_taken() -> None:
    """As templatefile(): a missing key is an error wherever it is referenced."""
    with pytest.raises(TemplateError, match="variables not given: leaf_listen"):
        render("%{ if hub }${leaf_listen}%{ endif }", {"hub": False})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${upper(name)}", "unsupported expression"),
        ("${a + b}", "unsupported expression"),
        ("%{ if hub ~}x%{ endif }", "strip markers"),
        ("%{ if hub }x", "has no %{ endif }"),
        ("%{ for x in xs }x", "has no %{ endfor }"),
        ("%{ endif }", "unsupported or misplaced directive"),
        ("%{ for k, v in m }x%{ endfor }", "unsupported or misplaced directive"),
    ],
)
def test_unsupported_syntax_is_refused(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render(text, {"name": "n", "a": 1, "b": 2, "hub": True, "xs": [], "m": {}})


@pytest.mark.parametrize(
    ("text", "variables", "message"),
    [
        ("${flag}", {"flag": True}, "cannot interpolate a bool"),
        ("${ratio}", {"ratio": 0.5}, "cannot interpolate a float"),
        ("%{ if name }%{ endif }", {"name": "x"}, "must be a bool"),
        ("%{ for x in name }%{ endfor }", {"name": "x"}, "needs a list"),
        ("${p.missing}", {"p": {}}, "no attribute 'missing'"),
    ],
)
def test_wrong_types_are_refused(text: str, variables: dict[str, object], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render(text, variables)


def _variables(*, store_dir: str, hub: bool = False) -> dict[str, object]:
    return natsconf.server_variables(
        server_name="n",
        client_listen="127.0.0.1:1",
        monitor_listen="127.0.0.1:2",
        store_dir=store_dir,
        domain="d",
        hub=hub,
        max_file_store_bytes=1,
        max_memory_store_bytes=1,
    )


def test_values_that_would_break_out_of_their_quotes_are_refused() -> None:
    for bad in ('a"b', "a\\b", "a\nb"):
        with pytest.raises(ValueError, match="double quote, backslash or line break"):
            _variables(store_dir=bad)
    with pytest.raises(ValueError, match="a hub needs leaf_listen"):
        _variables(store_dir="/s", hub=True)


def test_the_permissions_file_is_checked(tmp_path: Path) -> None:
    path = natsconf.PERMISSIONS_FILE
    permissions = natsconf.load_permissions(path)
    assert permissions.account == "TESSERA"
    assert "seats.>" in permissions.users.writer.publish
    broken = tmp_path / "permissions.json"
    broken.write_text(path.read_text().replace('"seats.>"', '"seats .>"', 1))
    with pytest.raises(ValueError, match=r"permissions\.json"):
        natsconf.load_permissions(broken)


def test_passwords_are_json_quoted_for_nats_server() -> None:
    assert natsconf.password_environment({"reader": "12345", "leaf": "x"}) == {
        natsconf.ENV_READER_PASSWORD: '"12345"',
        natsconf.ENV_LEAF_PASSWORD: '"x"',
    }
