# Renders conversations with a model's own chat template (embedded into the library at build
# time; chat_template.cpp runs it in the sandbox, since a template is code from the model's files).
#
# The Jinja environment is the one Hugging Face transformers renders apply_chat_template with
# (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, a tojson filter that
# keeps non-ASCII, raise_exception and strftime_now), so that the text is transformers' own.
# chat_template.cpp prepends one line, `ARGS = "<base64 of a JSON object>"`:
#   {"template": str, "conversations": [[{"role", "content"}, ...], ...],
#    "add_generation_prompt": bool, "special_tokens": {"bos_token": ..., ...}}
# and reads one line back: {"rendered": [str, ...]} or {"error": str}.
import base64, json, sys
from datetime import datetime

A = json.loads(base64.b64decode(ARGS))


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
    sys.exit(0)


try:
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError as e:
    reply({"error": "the interpreter %s cannot import jinja2 (%s)" % (sys.executable, e)})


class Generation(Extension):
    # `{% generation %}...{% endgeneration %}` marks assistant text in some templates; the text
    # renders as it is.
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


try:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    template = env.from_string(A["template"])
except Exception as e:
    reply({"error": "the chat template does not compile: %s: %s" % (type(e).__name__, e)})

rendered = []
for i, messages in enumerate(A["conversations"]):
    try:
        rendered.append(template.render(messages=messages, add_generation_prompt=A["add_generation_prompt"],
                                        **A["special_tokens"]))
    except Exception as e:
        reply({"error": "conversation %d: %s: %s" % (i, type(e).__name__, e)})
reply({"rendered": rendered})
