"""The shell commands of a documentation section, as a reader would copy them."""

from __future__ import annotations


def section(markdown: str, heading: str) -> str:
    """The text under `heading` (a whole line, e.g. "## First rollout"), up to the next heading of its level or higher."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = markdown.split("\n")
    start = lines.index(heading) + 1
    body, fence = [], False
    for line in lines[start:]:
        if line.startswith("```"):
            fence = not fence
        stripped = line.lstrip("#")
        if not fence and line.startswith("#") and stripped.startswith(" ") and len(line) - len(stripped) <= level:
            break
        body.append(line)
    return "\n".join(body)


def bash_commands(markdown: str, heading: str) -> list[str]:
    """Every command of every ```bash block under `heading`, each with its continuation lines."""
    commands: list[str] = []
    for block in section(markdown, heading).split("```bash\n")[1:]:
        current = ""
        for line in block.split("```", 1)[0].splitlines():
            current += line + "\n"
            if not line.endswith("\\"):
                commands.append(current.strip())
                current = ""
    return commands
