"""mmstack security: `inv validate-security`.

    rules.py      rule catalogue (MMS0xx-3xx), `Finding`, severities, `mask`
    patterns.py   secret-like keys, references, weak values, key material, image tags, ports
    yamllines.py  YAML with the file/line of every key and item; Compose-style merging
    scan.py       pure scanners per file kind (yaml/compose/schema, env, template, text, store)
    gitcheck.py   is a file tracked by git (tolerates no repository, no git)
    validate.py   target discovery and `validate_security(stack_dir, extra_paths, hints)`
    output.py     table (rich on a terminal), JSON, SARIF 2.1.0
"""
