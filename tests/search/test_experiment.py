"""Experiment files: strict validation, overrides, metrics and constraints."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas import NasConfigError
from nas.search import Constraint, load_experiment, parse_metric
from nas.search._experiment import Metric

GOOD = """
name: demo
space: mobilenet_small
data: {dataset: digits}
train: {epochs: 2}
objectives: [error, params, latency_ms@cpu]
constraints:
  latency_ms@cpu: "<= 2.0"
  accuracy: ">= 0.5"
search: {sampler: nsga2, n_trials: 9, seed: 4}
"""


def write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_good_experiment(tmp_path):
    exp = load_experiment(write(tmp_path, GOOD))
    assert [m.name for m in exp.objectives] == ["error", "params", "latency_ms@cpu"]
    assert [m.direction for m in exp.objectives] == ["minimize"] * 3
    assert exp.devices == ("cpu",)
    assert [str(c) for c in exp.constraints] == ["latency_ms@cpu <= 2", "accuracy >= 0.5"]
    assert exp.search.sampler == "nsga2" and exp.search.n_trials == 9
    assert exp.out == "runs/demo"
    assert exp.needs_training


def test_overrides(tmp_path):
    exp = load_experiment(
        write(tmp_path, GOOD),
        ["search.n_trials=60", "train.lr=1e-3", "search.sampler=random", "out=elsewhere"],
    )
    assert exp.search.n_trials == 60 and exp.train.lr == pytest.approx(1e-3)
    assert exp.search.sampler == "random" and exp.out == "elsewhere"
    with pytest.raises(NasConfigError, match="expected KEY=VALUE"):
        load_experiment(write(tmp_path, GOOD), ["search.n_trials"])
    with pytest.raises(NasConfigError, match=r"search\.n_trails: unknown key.*did you mean"):
        load_experiment(write(tmp_path, GOOD), ["search.n_trails=5"])
    # '>' opens a YAML block scalar: the error says how to pass the text, and that works
    with pytest.raises(NasConfigError) as info:
        load_experiment(write(tmp_path, GOOD), ["constraints.accuracy=>= 0.6"])
    hint = "quote it inside the shell's quotes: --set 'constraints.accuracy=\">= 0.6\"'"
    assert "not valid YAML (while scanning a block scalar)" in str(info.value)
    assert hint in str(info.value)
    exp = load_experiment(write(tmp_path, GOOD), ['constraints.accuracy=">= 0.6"'])
    assert "accuracy >= 0.6" in [str(c) for c in exp.constraints]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("search.n_trials=x", "--set 'search.n_trials=x': search.n_trials: expected an integer"),
        ("train={epochs: 0}", "--set 'train={epochs: 0}': train.epochs: expected an integer >= 1"),
        ("name.x=1", "--set 'name.x=1': 'name' is a string in "),
        ("serach.n_trials=5", "--set 'serach.n_trials=5': serach: unknown key 'serach'"),
        (
            "objectives=error,params",
            "--set 'objectives=error,params': objectives: unknown metric 'error,params': one "
            "name, not a list; write a list as [error, params]",
        ),
        (
            "constraints.latncy_ms@cpu=<= 1",
            "--set 'constraints.latncy_ms@cpu=<= 1': constraints.latncy_ms@cpu: unknown metric "
            "'latncy_ms@cpu'; choose one of error, accuracy, params, macs, peak_mem_bytes, "
            "latency_ms@cpu, energy_mj@cpu (did you mean 'latency_ms@cpu'?)",
        ),
    ],
)
def test_override_errors_name_the_override_not_a_line_of_the_file(tmp_path, override, message):
    with pytest.raises(NasConfigError) as info:
        load_experiment(write(tmp_path, GOOD), [override])
    assert str(info.value).startswith(message)
    assert "exp.yaml:" not in str(info.value)


def test_a_key_set_in_a_section_another_set_turned_off_is_refused(tmp_path):
    """`--set compress=null --set compress.latency.repeats=20` quietly turned compression
    back on with its defaults."""
    with pytest.raises(NasConfigError) as info:
        load_experiment(write(tmp_path, GOOD), ["train=null", "train.lr=0.1"])
    assert str(info.value) == (
        "--set 'train.lr=0.1': sets a key of 'train', which --set 'train=null' turned off; "
        "drop one of the two"
    )


def test_errors_found_later_are_located_where_the_setting_was_made(tmp_path):
    """A cross-key check, or a fine-tune that diverged, named the experiment file for a
    value set on the command line."""
    exp_file = write(
        tmp_path, GOOD.replace("{dataset: digits}", "{dataset: digits, test_fraction: 0.2}")
    )
    with pytest.raises(NasConfigError, match=r"^--set 'data.val_fraction=0.9': data.val_fr"):
        load_experiment(exp_file, ["data.val_fraction=0.9"])
    exp = load_experiment(exp_file, ["finetune={epochs: 1}", "search.n_trials=3"])
    assert exp.locate("finetune.lr") == "--set 'finetune={epochs: 1}'"
    assert exp.locate("search.n_trials") == "--set 'search.n_trials=3'"
    assert exp.locate("train.lr") == str(exp_file)


def test_a_mapping_set_over_a_mapping_says_what_it_drops(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="nas._config"):
        exp = load_experiment(write(tmp_path, GOOD), ["train={lr: 0.1}"])
    assert exp.train.lr == 0.1 and exp.train.epochs != 2  # the file's epochs: 2 dropped
    (record,) = caplog.records
    assert record.getMessage().startswith("--set 'train={lr: 0.1}' replaces all of train in ")
    assert record.getMessage().endswith(
        ", dropping epochs; to change single keys, set them one by one (--set train.lr=...)"
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="nas._config"):
        load_experiment(write(tmp_path, GOOD), ["train={epochs: 3, lr: 0.1}"])
    assert not caplog.records  # nothing of the file's dropped


def test_a_finetune_key_set_on_an_experiment_without_finetune_warns_it_adds_the_stage(
    tmp_path, caplog
):
    """The README's advice for shared machines, --set finetune.threads=1, turned a search
    into a 30-epoch fine-tune of the knee models without a word."""
    assert "finetune" not in GOOD
    with caplog.at_level("WARNING", logger="nas.search._experiment"):
        exp = load_experiment(write(tmp_path, GOOD), ["finetune.threads=1"])
    assert exp.finetune is not None and exp.finetune.threads == 1
    (record,) = caplog.records
    assert record.getMessage().startswith(
        "--set 'finetune.threads=1' adds a 'finetune:' section, which "
    )
    assert "to stop at the Pareto front, leave out the finetune.* settings" in record.getMessage()
    caplog.clear()
    with caplog.at_level("WARNING", logger="nas.search._experiment"):  # asked for in so many words
        load_experiment(write(tmp_path, GOOD), ["finetune={epochs: 3}"])
        with_finetune = GOOD + "finetune: {epochs: 2}\n"
        load_experiment(write(tmp_path, with_finetune), ["finetune.threads=1"])
    assert not caplog.records


def test_paths_set_on_the_command_line_are_relative_to_the_working_directory(
    tmp_path, monkeypatch
):
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    (spaces / "s.yaml").touch()
    sub = tmp_path / "exp"
    sub.mkdir()
    path = write(sub, GOOD)
    monkeypatch.chdir(tmp_path)
    in_file = sub / "in_file.yaml"
    in_file.write_text(GOOD.replace("mobilenet_small", "spaces/s.yaml"))
    with pytest.raises(NasConfigError, match=r"in_file\.yaml:3: space: space file .*exp/spaces/s"):
        load_experiment(in_file)
    assert load_experiment(path, ["space=spaces/s.yaml"]).space == str(spaces / "s.yaml")
    with pytest.raises(NasConfigError, match=r"^--set 'space=nope/s.yaml': space: space file"):
        load_experiment(path, ["space=nope/s.yaml"])
    with pytest.raises(NasConfigError, match=rf"teacher {tmp_path}/t.json does not exist"):
        load_experiment(path, ["finetune.distill.teacher=t.json"])


def test_a_teacher_must_exist_and_carry_trained_weights(tmp_path):
    untrained = tmp_path / "arch.json"
    untrained.write_text('{"space": "mobilenet_small", "arch": {}}')
    with pytest.raises(
        NasConfigError,
        match=r"exp\.yaml:11: finetune\.distill\.teacher: "
        r"teacher .*nope\.json does not exist; name a finished model",
    ):
        load_experiment(write(tmp_path, GOOD + "finetune: {distill: {teacher: nope.json}}\n"))
    with pytest.raises(NasConfigError, match="names no trained weights, so it would teach a"):
        load_experiment(write(tmp_path, GOOD + "finetune: {distill: {teacher: arch.json}}\n"))
    untrained.write_text('{"space": "mobilenet_small", "weights": "w.safetensors"}')
    exp = load_experiment(write(tmp_path, GOOD + "finetune: {distill: {teacher: arch.json}}\n"))
    assert exp.finetune is not None and exp.finetune.distill is not None
    assert exp.finetune.distill.teacher == str(untrained)


@pytest.mark.parametrize(
    ("old", "new", "pattern"),
    [
        ("sampler: nsga2", "sampler: nsga4", r"search\.sampler: unknown value 'nsga4'.*nsga2"),
        (
            "[error, params, latency_ms@cpu]",
            "[eror, params]",
            r"objectives\[0\]: unknown metric 'eror'.*did you mean 'error'",
        ),
        ("[error, params, latency_ms@cpu]", "[error, accuracy]", r"same objective"),
        ('"<= 2.0"', '"at most 2"', r"constraints\.latency_ms@cpu: expected a bound like"),
        (
            'accuracy: ">= 0.5"',
            'error: "<= 5"',
            r'constraints\.error: error is a fraction in \[0, 1\], got 5; for 5% write "<= 0\.05"',
        ),
        (
            "[error, params, latency_ms@cpu]",
            "[error, {maximise: macs}, latency_ms@cpu]",
            r"objectives\[1\]: expected a metric name .* \(did you mean 'maximize'\?\)",
        ),
        ("train: {epochs: 2}", "train: {epochs: 0}", r"train\.epochs"),
        (
            "name: demo",
            "nme: demo",
            r"yaml:\d+: nme: unknown key 'nme'.*did you mean 'name'",
        ),
        ("search:", "serch:", r"serch: unknown key 'serch'.*did you mean 'search'"),
        ("space: mobilenet_small", "space: missing.yaml", r"space: space file .* does not exist"),
        ("n_trials: 9", "n_trials: nine", r"search\.n_trials: expected an integer"),
        (
            "train: {epochs: 2}",
            "train:\n  epochs: 2\n  epochs: 3",
            r"exp\.yaml:\d+: train\.epochs: key given twice \(also on line \d+\); keep one",
        ),
        (
            "data: {dataset: digits}",
            "data: {dataset: digits, val_fraction: 0.7, test_fraction: 0.3}",
            r"exp\.yaml:\d+: data\.test_fraction: val_fraction 0\.7 \+ test_fraction 0\.3 leave "
            r"no training data; keep their sum below 1",
        ),
        (
            "data: {dataset: digits}\n",
            "",
            r"exp\.yaml:5: objectives\[0\]: 'error' is measured by training, and the experiment "
            r"names no data to train on; add a data section",
        ),
    ],
)
def test_bad_experiments(tmp_path, old, new, pattern):
    assert old in GOOD
    with pytest.raises(NasConfigError, match=pattern) as info:
        load_experiment(write(tmp_path, GOOD.replace(old, new)))
    assert str(info.value).startswith(str(tmp_path / "exp.yaml"))


def test_a_table_for_another_space_is_reported_where_the_metric_names_it(tmp_path):
    text = GOOD.replace("space: mobilenet_small", "space: nasbench201").replace(
        "[error, params, latency_ms@cpu]", "[error, params, latency_ms@cpu-x86]"
    )
    with pytest.raises(
        NasConfigError,
        match=r"exp\.yaml:\d+: objectives\[2\]: table 'cpu-x86' .* not 'nasbench201'; add it "
        r"to the table with: nas profile --space nasbench201 --device cpu --threads 2 --warmup "
        r"20 --repeats 60 --batch 1 --dtype fp32 --out \S+latency_tables/cpu-x86\.json",
    ):
        load_experiment(write(tmp_path, text))
    # a device only listed under 'devices' (costed, in no metric) is reported at its item
    text = "name: e\nspace: nasbench201\nobjectives: [params, macs]\n"
    text += "devices: [edge-tpu, cpu-x86]\n"
    with pytest.raises(NasConfigError, match=r"exp\.yaml:4: devices\[1\]: table 'cpu-x86' "):
        load_experiment(write(tmp_path, text))


def test_an_error_in_the_space_file_is_reported_there_with_a_measured_table(tmp_path):
    """Checking a table against the space loads the space: its errors name its own file, line
    and key, not the metric that named the table."""
    from nas.space._space import builtin_space_dir

    text = (builtin_space_dir() / "mobilenet_small.yaml").read_text()
    text = text.replace("name: mobilenet_small", "name: mine")
    (tmp_path / "mine.yaml").write_text(text.replace("depth: [1, 2]", "depth: [1, two]", 1))
    exp = GOOD.replace("space: mobilenet_small", "space: mine.yaml")
    exp = exp.replace("latency_ms@cpu]", "latency_ms@cpu-x86]")
    with pytest.raises(NasConfigError) as info:
        load_experiment(write(tmp_path, exp))
    assert str(info.value).startswith(str(tmp_path / "mine.yaml")), str(info.value)
    assert "depth[1]: expected an integer, got 'two'" in str(info.value)


def test_metrics_and_constraints():
    assert parse_metric("accuracy") == Metric("accuracy", "maximize", True)
    assert parse_metric("energy_mj@edge-tpu").device == "edge-tpu"
    with pytest.raises(NasConfigError, match="did you mean 'latency_ms@<device>'"):
        parse_metric("latency_ms")
    c = Constraint(parse_metric("params"), "<=", 1000)
    assert c.satisfied(1000) and c.violation(1000) == 0 and c.violation(1500) == 0.5
    g = Constraint(parse_metric("accuracy"), ">=", 0.9)
    assert g.violation(0.95) < 0 < g.violation(0.8)
    strict = Constraint(parse_metric("params"), "<", 10)
    assert strict.violation(10) > 0 and not strict.satisfied(10)


def test_unknown_device_is_reported_where_it_is_named(tmp_path):
    """A misspelt device is an error at the objective or constraint that names it."""
    with pytest.raises(NasConfigError, match=r"unknown device 'cpx'.*did you mean 'cpu'") as info:
        load_experiment(write(tmp_path, GOOD.replace("latency_ms@cpu]", "latency_ms@cpx]")))
    line = GOOD.splitlines().index(next(x for x in GOOD.splitlines() if "objectives" in x)) + 1
    assert f"exp.yaml:{line}: objectives[2]: unknown device" in str(info.value)
    with pytest.raises(NasConfigError, match=r"constraints\.latency_ms@cpx: unknown device"):
        load_experiment(write(tmp_path, GOOD.replace("latency_ms@cpu:", "latency_ms@cpx:")))
    # with a 'devices' list: its own typo is reported in it, a metric's at the metric
    listed = GOOD + "devices: [cpu, edgetpu]\n"
    with pytest.raises(
        NasConfigError, match=r"devices\[1\]: unknown device 'edgetpu'.*'edge-tpu'"
    ):
        load_experiment(write(tmp_path, listed))
    listed = GOOD + "devices: [cpu, edge-tpu]\n"  # a listed device no metric names is fine
    assert load_experiment(write(tmp_path, listed)).devices == ("cpu", "edge-tpu")
    listed = GOOD.replace("latency_ms@cpu]", "latency_ms@cpx]") + "devices: [cpu, edge-tpu]\n"
    with pytest.raises(NasConfigError, match=r"objectives\[2\]: metric on device 'cpx' but "):
        load_experiment(write(tmp_path, listed))
    # a path to a table or profile is not a device name: it is loaded when the search starts
    for path in ("tables/my.json", "tables/my.csv", "my.yaml"):
        text = GOOD.replace("latency_ms@cpu]", f"latency_ms@{path}]")
        exp = load_experiment(write(tmp_path, text))
        assert path in exp.devices


def test_user_table_folders(tmp_path):
    """A device can come from the user's own folder of tables (searched before built-ins)."""
    import shutil

    from nas.cost import builtin_table_dir
    from nas.search import prepare

    folder = tmp_path / "my_tables"
    folder.mkdir()
    shutil.copy(builtin_table_dir() / "edge-tpu.yaml", folder / "edge-tpu.yaml")
    text = (
        (builtin_table_dir() / "edge-tpu.yaml")
        .read_text()
        .replace("device: edge-tpu", "device: my-npu")
    )
    (folder / "my-npu.yaml").write_text(text)
    exp = load_experiment(
        write(
            tmp_path,
            """
name: mine
space: nasbench201
objectives: [params, latency_ms@my-npu]
table_dirs: [my_tables]
""",
        )
    )
    assert exp.table_dirs == (str(folder),)
    assert "my-npu" in prepare(exp).evaluator.cost_models
    # an error in the profile itself is said at its own file, line and key
    bad = text.replace("memory_bandwidth_bytes_per_s:", "memory_bandwidth_bytes_per_s: -1 #")
    (folder / "my-npu.yaml").write_text(bad)
    line = next(n for n, t in enumerate(bad.splitlines(), 1) if "bandwidth_bytes_per_s: -1" in t)
    with pytest.raises(NasConfigError) as info:
        load_experiment(tmp_path / "exp.yaml")
    assert str(info.value).startswith(
        f"{folder / 'my-npu.yaml'}:{line}: memory_bandwidth_bytes_per_s: "
    )
    assert f"(device 'my-npu', named at {tmp_path / 'exp.yaml'}:4)" in str(info.value)
    with pytest.raises(NasConfigError, match=r"table_dirs\[0\]: table folder .* does not exist"):
        load_experiment(
            write(
                tmp_path,
                "name: x\nspace: nasbench201\nobjectives: [params]\ntable_dirs: [nowhere]\n",
            )
        )


def test_an_objective_may_maximize_a_capacity_proxy(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("name: x\nspace: nasbench201\nobjectives: [{maximize: params}, macs]\n")
    exp = load_experiment(path)
    assert [(m.name, m.direction) for m in exp.objectives] == [
        ("params", "maximize"),
        ("macs", "minimize"),
    ]
    assert exp.to_dict()["objectives"] == [{"maximize": "params"}, "macs"]
    for text, pattern in [
        ("[{maximize: latency_ms@cpu}]", r"exp\.yaml:3: objectives\[0\]\.maximize: only params, "),
        ("[{maximize: error}]", r"maximize 'accuracy' by naming it"),
        ("[{minimize: macs}]", r"exp\.yaml:3: objectives\[0\]: expected a metric name or "),
    ]:
        path.write_text(f"name: x\nspace: nasbench201\nobjectives: {text}\n")
        with pytest.raises(NasConfigError, match=pattern):
            load_experiment(path)


def test_a_misspelt_section_is_named_before_what_it_would_have_enabled(tmp_path):
    """'finetun:' with a 'select:' said select needs a finetune section, never the typo."""
    text = GOOD + "finetun: {epochs: 3}\nselect: {rule: accuracy}\n"
    with pytest.raises(NasConfigError, match=r"finetun: unknown key .*did you mean 'finetune'"):
        load_experiment(write(tmp_path, text))


def test_a_budget_on_a_device_the_study_does_not_cost_is_refused_before_the_search(tmp_path):
    final = "finetune: {epochs: 3}\nselect: {rule: budgets, budgets: {%s: [0.3]}}\n"
    with pytest.raises(
        NasConfigError,
        match=r"select.budgets.latency_ms@gpu: budget on device 'gpu', which the study does not "
        r"cost .*choose one of latency_ms@cpu, energy_mj@cpu",
    ):
        load_experiment(write(tmp_path, GOOD + final % "latency_ms@gpu"))
    for metric in ("macs", "energy_mj@cpu"):  # any metric the trials carry
        assert load_experiment(write(tmp_path, GOOD + final % metric)).select.budgets


@pytest.mark.parametrize(
    ("compress", "pattern"),
    [
        (
            "{prune: {ratio: 0}}",
            r"exp.yaml:\d+: compress.prune.ratio: expected a number strictly "
            r"between 0 and 1, got 0 \(prune: null turns pruning off\)",
        ),
        (
            "{sparsity: 0}",
            r"compress.sparsity: expected a number strictly between 0 and 1, got 0 "
            r"\(sparsity: null turns it off\)",
        ),
        (
            "{sparse_epochs: 0}",
            r"exp.yaml:\d+: compress.sparse_epochs: expected an integer >= 1, got 0",
        ),
    ],
)
def test_a_compression_that_would_do_nothing_is_refused_at_load(tmp_path, compress, pattern):
    text = GOOD + f"finetune: {{epochs: 3}}\ncompress: {compress}\n"
    with pytest.raises(NasConfigError, match=pattern):
        load_experiment(write(tmp_path, text))


def test_sparse_epochs_set_the_fine_tune_under_the_mask(tmp_path):
    text = GOOD + "finetune: {epochs: 9}\ncompress: {sparse_epochs: 5}\n"
    exp = load_experiment(write(tmp_path, text))
    assert exp.compress.sparse_epochs_for(exp.finetune.epochs) == 5
    assert exp.compress.to_dict()["sparse_epochs"] == 5
    default = load_experiment(write(tmp_path, GOOD + "finetune: {epochs: 9}\ncompress: {}\n"))
    assert (
        default.compress.sparse_epochs_for(9) == 3 and default.compress.sparse_epochs_for(2) == 1
    )
    assert "sparse_epochs" not in default.compress.to_dict()  # earlier runs' settings unchanged


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (  # a right key in the wrong section: where it belongs, with the same value
            "n_trials=5",
            "--set 'n_trials=5': n_trials: unknown key 'n_trials' at the top level; it belongs "
            "at search.n_trials: --set search.n_trials=5",
        ),
        (
            "search.epochs=3",
            "search.epochs: unknown key 'epochs' in search; it belongs at train.epochs, "
            "finetune.epochs or compress.prune.epochs: --set train.epochs=3 or --set "
            "finetune.epochs=3 or --set compress.prune.epochs=3",
        ),
        (
            "finetune.temperature=2",
            "it belongs at finetune.distill.temperature: --set finetune.distill.temperature=2",
        ),
        ("search.objectives=[error]", "it belongs at objectives: --set objectives=[error]"),
        (  # misspelt and misplaced
            "ntrials=5",
            "unknown key 'ntrials' at the top level (did you mean 'n_trials'?); it belongs at "
            "search.n_trials: --set search.n_trials=5",
        ),
        # a misspelling of a key of its own section stays one (the section's keys listed)
        ("search.ntrials=5", "search.ntrials: unknown key 'ntrials'; choose one of n_trials"),
        ("nme=x", "nme: unknown key 'nme'; choose one of compress,"),
    ],
)
def test_a_key_in_the_wrong_section_says_where_it_belongs(tmp_path, override, message):
    """`--set n_trials=5` suggested 'constraints', and `--set epochs=2` 'search'."""
    with pytest.raises(NasConfigError) as info:
        load_experiment(write(tmp_path, GOOD), [override])
    assert message in str(info.value)


def test_a_misplaced_key_in_the_file_is_named_at_its_line(tmp_path):
    text = GOOD.replace("search: {sampler: nsga2,", "n_trials: 9\nsearch: {sampler: nsga2,")
    with pytest.raises(NasConfigError) as info:
        load_experiment(write(tmp_path, text.replace(" n_trials: 9, seed", " seed")))
    line = text.splitlines().index("n_trials: 9") + 1
    assert str(info.value) == (
        f"{tmp_path / 'exp.yaml'}:{line}: n_trials: unknown key 'n_trials' at the top level; "
        "it belongs at search.n_trials: move it into search"
    )


def test_every_section_key_is_one_its_section_reads():
    """SECTION_KEYS (where a misplaced key is sent) lists only keys the sections accept."""
    from nas.search._experiment import SECTION_KEYS

    # every section, each nested one included
    quickstart = Path(__file__).parents[2] / "experiments" / "quickstart.yaml"
    for section, keys in SECTION_KEYS.items():
        for key in keys:
            path = f"{section}.{key}" if section else key
            try:
                load_experiment(quickstart, [f"{path}=12345"])
            except NasConfigError as exc:
                assert "unknown key" not in str(exc), path


def test_yaml_false_for_a_choice_of_words_suggests_never(tmp_path):
    """`qat: false` suggested 'always' (closest in spelling to 'False')."""
    for said, meant in (("false", "never"), ("no", "never"), ("true", "always")):
        with pytest.raises(NasConfigError, match=rf"did you mean '{meant}'\?"):
            load_experiment(
                write(tmp_path, GOOD), ["finetune={epochs: 1}", f"compress.quantize.qat={said}"]
            )


def test_a_space_file_given_as_the_experiment_says_so(tmp_path):
    """It said 'type: unknown key 'type'; choose one of compress, ...'."""
    from nas.space import builtin_space_dir

    with pytest.raises(NasConfigError, match=r"nasbench201\.yaml: a search space file, not an "):
        load_experiment(builtin_space_dir() / "nasbench201.yaml")


def test_overrides_given_as_one_string_are_refused(tmp_path):
    """load_experiment(path, "search.n_trials=3") read the string a character at a time and
    said "--set 's': expected KEY=VALUE"."""
    with pytest.raises(NasConfigError, match=r"^overrides: expected a list of 'KEY=VALUE' str"):
        load_experiment(write(tmp_path, GOOD), "search.n_trials=3")


def test_a_population_size_for_a_sampler_without_one_is_warned_of(tmp_path, caplog):
    """search.population_size with tpe was taken without a word (only nsga2/nsga3 use it)."""
    with caplog.at_level("WARNING", logger="nas.search._experiment"):
        load_experiment(write(tmp_path, GOOD), ["search.population_size=7"])  # nsga2: used
        assert not caplog.records
        load_experiment(write(tmp_path, GOOD), ["search.population_size=7", "search.sampler=tpe"])
    (record,) = caplog.records
    assert record.getMessage() == (
        "--set 'search.population_size=7': search.population_size is for the genetic samplers "
        "(nsga2, nsga3); sampler tpe does not use it"
    )
