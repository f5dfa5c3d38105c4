"""``zigllama new-metadata IN OUT ...``: a copy of a GGUF file with metadata changed."""
USES_BLAS = False
HELP = ("copy a GGUF file with metadata keys set or removed (the options of gguf-new-metadata); "
        "tensor bytes are copied, never decoded")


def add_arguments(parser):
    parser.add_argument("input", help="the .gguf file to copy")
    parser.add_argument("output", help="the new .gguf file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY[:TYPE]=VALUE",
                        help="set a key (its current type, or TYPE; a new key without TYPE is a string)")
    parser.add_argument("--remove", "--remove-metadata", action="append", default=[], metavar="KEY",
                        dest="remove", help="remove a key")
    parser.add_argument("--general-name", metavar="NAME", help="set general.name")
    parser.add_argument("--general-description", metavar="TEXT", help="set general.description")
    parser.add_argument("--chat-template", metavar="TEMPLATE", help="set tokenizer.chat_template")
    parser.add_argument("--chat-template-file", metavar="FILE", help="tokenizer.chat_template from a Jinja file")
    parser.add_argument("--chat-template-config", metavar="JSON",
                        help="tokenizer.chat_template from a tokenizer_config.json")
    parser.add_argument("--pre-tokenizer", metavar="NAME", help="set tokenizer.ggml.pre")
    parser.add_argument("--special-token", nargs=2, action="append", default=[], metavar=("NAME", "TOKEN"),
                        help="set tokenizer.ggml.NAME_token_id to the id of TOKEN (bos, eos, eot, padding, ...)")
    parser.add_argument("--special-token-by-id", nargs=2, action="append", default=[], metavar=("NAME", "ID"),
                        help="set tokenizer.ggml.NAME_token_id to ID")
    parser.add_argument("--alignment", type=int, metavar="N", help="set general.alignment (relayouts tensors)")
    parser.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--dry-run", action="store_true", help="show the changes, write nothing")


def _chat_template(args):
    import json

    if args.chat_template_file:
        with open(args.chat_template_file, encoding="utf-8") as f:
            return f.read()
    if args.chat_template_config:
        with open(args.chat_template_config, encoding="utf-8") as f:
            template = json.load(f).get("chat_template")
        if not isinstance(template, str):
            from ..errors import GGUFInvalidValue
            raise GGUFInvalidValue(f"{args.chat_template_config}: no chat_template string in it")
        return template
    return args.chat_template


def changes(args, reader):
    """(set, remove) for rewrite_metadata, in gguf-new-metadata's order: a new chat
    template replaces every tokenizer.chat_template* key and comes first among new keys."""
    from .._core.gguf_format import GGUFValueType as T
    from ..errors import GGUFError, GGUFInvalidValue
    from ..gguf_edit import CHAT_TEMPLATE, SPECIAL_TOKENS, parse_type, parse_value, token_id
    from ..gguf_writer import GGUFValue

    md = reader.metadata
    set_, remove = {}, list(args.remove)
    template = _chat_template(args)
    if template is not None:
        remove += [k for k in md if k.startswith(CHAT_TEMPLATE) and k not in remove]
        set_[CHAT_TEMPLATE] = GGUFValue(template, T.STRING)
    for key, value in (("general.name", args.general_name), ("general.description", args.general_description),
                       ("tokenizer.ggml.pre", args.pre_tokenizer)):
        if value is not None:
            set_[key] = GGUFValue(value, T.STRING)
    for name, text in args.special_token:
        if name not in SPECIAL_TOKENS:
            raise GGUFInvalidValue(f"unknown special token {name!r}; one of {', '.join(SPECIAL_TOKENS)}")
        set_[SPECIAL_TOKENS[name]] = GGUFValue(token_id(reader, text), T.UINT32)
    for name, text in args.special_token_by_id:
        if name not in SPECIAL_TOKENS:
            raise GGUFInvalidValue(f"unknown special token {name!r}; one of {', '.join(SPECIAL_TOKENS)}")
        n_vocab = len(md.get("tokenizer.ggml.tokens") or ())
        if not text.isdecimal() or int(text) >= n_vocab:
            raise GGUFError(f"token id {text!r} is not within the vocabulary of {n_vocab} tokens")
        set_[SPECIAL_TOKENS[name]] = GGUFValue(int(text), T.UINT32)
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise GGUFInvalidValue(f"--set {item!r}: expected KEY=VALUE or KEY:TYPE=VALUE")
        key, _, type_name = key.partition(":")
        if type_name:
            t = parse_type(type_name)
        else:
            t = md.value_type(key) if key in md else T.STRING
        et = md.element_type(key) if key in md and t == md.value_type(key) else None
        set_[key] = GGUFValue(parse_value(text, t, et, where=f"--set {key}"), t, et)
    return set_, remove


def run(args):
    from .._core.gguf_format import GGUFReader
    from ..gguf_writer import rewrite_metadata
    from ._files import atomic_output, check_output
    from ._terminal import escape

    with GGUFReader(args.input) as r:
        set_, remove = changes(args, r)
        n_keys = r.kv_count
    for key in remove:
        print(f"remove {escape(key)}")
    for key, v in set_.items():
        shown = repr(v.value)
        print(f"set    {escape(key)} = {escape(shown if len(shown) <= 120 else shown[:117] + '...')}"
              f" ({v.type.name.lower()})")
    if args.dry_run:
        check_output(args.output, (args.input,), args.force)
        return 0
    with atomic_output(args.output, (args.input,), args.force) as tmp:
        rewrite_metadata(args.input, tmp, set_, remove, alignment=args.alignment)
    print(f"{escape(args.output)}: written ({n_keys} keys in, {len(set_)} set, {len(remove)} removed)")
    return 0
