"""Corpus readers on miniature trees in the exact release layouts, and on the real data here.

The builders below are shared with test_manifest.py and test_cli_data.py.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from emotrace.corpora import CORPORA, load_corpus
from emotrace.corpora.iemocap import speaker_of
from emotrace.corpora.meld import normalise
from emotrace.corpora.ravdess import EMOBOX_TEST_ACTORS, fold_actors, read_ravdess
from emotrace.errors import BatchReport, InputError
from emotrace.labels import IEMOCAP_6

DATA = Path(os.environ.get("EMOTRACE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def real(corpus: str) -> Path:
    if not (DATA / corpus).is_dir():
        pytest.skip(f"real data not found at {DATA / corpus} (set EMOTRACE_DATA)")
    return DATA / corpus


def tone(path: Path, seconds: float = 0.2, sample_rate: int = 16000, channels: int = 1) -> Path:
    """A short sine tone: a real, decodable audio file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = 0.1 * np.sin(2 * np.pi * 440 * t)
    soundfile.write(path, np.stack([wave] * channels, axis=1), sample_rate)
    return path


def placeholder(path: Path) -> Path:
    """A video file stand-in: readers list videos, they never decode them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not decoded by corpus readers")
    return path


# --- RAVDESS -------------------------------------------------------------------------


def build_ravdess(root: Path) -> Path:
    """Actors 1 and 2, both statements; actor 1 neutral also as AV + video-only mp4."""
    for actor in (1, 2):
        folder = root / f"Actor_{actor:02d}"
        for emotion, intensity, statement in (
            ("01", "01", "01"),
            ("05", "02", "02"),
            ("02", "01", "01"),
        ):
            tone(folder / f"03-01-{emotion}-{intensity}-{statement}-01-{actor:02d}.wav")
    placeholder(root / "Actor_01" / "01-01-01-01-01-01-01.mp4")  # AV twin of an audio-only take
    placeholder(root / "Actor_01" / "02-01-01-01-01-01-01.mp4")  # video-only twin
    placeholder(root / "Actor_02" / "01-01-03-01-02-01-02.mp4")  # AV only: audio from the mp4
    tone(root / "Actor_01" / "03-02-03-01-01-01-01.flac")  # song
    return root


def test_ravdess_parses_names_pairs_modalities_and_leaves_out_song(tmp_path: Path) -> None:
    root = build_ravdess(tmp_path / "ravdess")
    tone(root / "Actor_01" / "03-01-09-01-01-01-01.wav")  # emotion 09 does not exist
    tone(root / "Actor_01" / "01-01-04-01-01-01-01.wav")  # modality 01 is mp4, not wav
    (root / "Actor_01" / "notes.txt").write_text("ignored")
    report = BatchReport()
    utterances = {u.id: u for u in read_ravdess(root, report)}

    assert len(utterances) == 7  # 3 audio-only takes per actor + 1 AV-only take, no song
    assert sorted(str(e.source) for e in report.skipped) == sorted(
        [
            str(root / "Actor_01" / "03-01-09-01-01-01-01.wav"),
            str(root / "Actor_01" / "01-01-04-01-01-01-01.wav"),
        ]
    )
    neutral = utterances["01-01-01-01-01-01"]
    assert neutral.audio == str(root / "Actor_01" / "03-01-01-01-01-01-01.wav")
    assert neutral.video == str(root / "Actor_01" / "01-01-01-01-01-01-01.mp4")
    assert (neutral.label, neutral.speaker, neutral.dataset) == ("neutral", "Actor_01", "ravdess")
    assert neutral.transcript == "Kids are talking by the door"
    assert neutral.group == "fold1"  # actor 1 is tested in EmoBox fold 1
    av_only = utterances["01-03-01-02-01-02"]
    assert av_only.audio == av_only.video == str(root / "Actor_02" / "01-01-03-01-02-01-02.mp4")
    assert av_only.transcript == "Dogs are sitting by the door"
    angry = utterances["01-05-02-02-01-02"]
    assert (angry.label, angry.video, angry.group) == ("angry", None, "fold5")
    assert utterances["01-02-01-01-01-01"].label == "calm"

    with_song = read_ravdess(root, BatchReport(), song=True)
    assert [u.label for u in with_song if u.id.startswith("02-")] == ["happy"]


def test_ravdess_folds_come_from_folds_json_when_present(tmp_path: Path) -> None:
    root = build_ravdess(tmp_path / "ravdess")
    builtin = load_corpus("ravdess", root)
    assert [f.test for f in builtin.folds][:2] == [
        ("Actor_01", "Actor_11", "Actor_20", "Actor_21"),
        ("Actor_04", "Actor_10", "Actor_12", "Actor_14"),
    ]
    (root / "folds.json").write_text(json.dumps({"test_actors": {"1": [1], "2": [2]}}))
    custom = load_corpus("ravdess", root)
    assert [(f.name, f.test) for f in custom.folds] == [
        ("fold1", ("Actor_01",)),
        ("fold2", ("Actor_02",)),
    ]
    assert {u.speaker: u.group for u in custom.utterances} == {
        "Actor_01": "fold1",
        "Actor_02": "fold2",
    }

    (root / "folds.json").write_text(json.dumps({"test_actors": {"1": [1], "2": [1, 2]}}))
    with pytest.raises(InputError, match="more than one fold"):
        load_corpus("ravdess", root)
    (root / "folds.json").write_text("{not json")
    with pytest.raises(InputError, match=r"folds\.json: not a folds file"):
        load_corpus("ravdess", root)


def test_real_ravdess_folds_json_agrees_with_the_builtin_emobox_folds() -> None:
    root = real("ravdess")
    assert (root / "folds.json").is_file()
    assert fold_actors(root) == dict(EMOBOX_TEST_ACTORS)
    assert sorted(a for actors in EMOBOX_TEST_ACTORS.values() for a in actors) == list(range(1, 25))


# --- IEMOCAP -------------------------------------------------------------------------

IEMOCAP_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def evaluation_block(start: float, end: float, utterance: str, code: str) -> str:
    """One sentence of an EmoEvaluation file, with its evaluator lines as the release has them."""
    return (
        f"[{start:.4f} - {end:.4f}]\t{utterance}\t{code}\t[2.5000, 3.0000, 3.0000]\n"
        "C-E1:\tNeutral;\t()\n"
        "C-E3:\tFrustration; Anger;\t()\n"
        f"C-F1:\tExcited;\t(curious)\n"
        "A-E1:\tval 3; act 2; dom  2;\t()\n"
        "A-F1:\tval 2; act 3; dom  3;\t(mildly aggravated)\n\n"
    )


# (session, dialog, utterance, code, start, end)
IEMOCAP_SENTENCES = [
    (1, "Ses01F_impro01", "Ses01F_impro01_F000", "neu", 6.2901, 8.2357),
    (1, "Ses01F_impro01", "Ses01F_impro01_M000", "exc", 8.9, 10.1),
    (1, "Ses01F_impro01", "Ses01F_impro01_F001", "hap", 10.5, 11.2),
    (1, "Ses01M_script01_1", "Ses01M_script01_1_F000", "sad", 1.0, 2.5),
    (1, "Ses01M_script01_1", "Ses01M_script01_1_M000", "fru", 3.0, 4.0),
    (2, "Ses02F_impro02", "Ses02F_impro02_F000", "ang", 2.0, 3.5),
    (2, "Ses02F_impro02", "Ses02F_impro02_M000", "xxx", 4.0, 5.0),
    (2, "Ses02F_impro02", "Ses02F_impro02_M001", "neu", 5.5, 6.0),
]


def build_iemocap(root: Path) -> Path:
    dialogs: dict[tuple[int, str], list[tuple]] = {}
    for sentence in IEMOCAP_SENTENCES:
        dialogs.setdefault(sentence[:2], []).append(sentence)
    for (session, dialog), sentences in dialogs.items():
        base = root / f"Session{session}"
        labels = IEMOCAP_HEADER + "".join(
            evaluation_block(start, end, utterance, code) for _, _, utterance, code, start, end in sentences
        )
        (base / "dialog" / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
        (base / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text(labels)
        (base / "dialog" / "EmoEvaluation" / "Categorical").mkdir(exist_ok=True)
        transcript = (
            "".join(
                f"{utterance} [{start:08.4f}-{end:08.4f}]: Words of {utterance[-4:]}, said.\n"
                for _, _, utterance, _, start, end in sentences
            )
            + "M: [BREATHING]\nF: Okay.\n"
        )
        (base / "dialog" / "transcriptions").mkdir(parents=True, exist_ok=True)
        (base / "dialog" / "transcriptions" / f"{dialog}.txt").write_text(transcript)
        for _, _, utterance, _, _, _ in sentences:
            tone(base / "sentences" / "wav" / dialog / f"{utterance}.wav")
    placeholder(root / "Session1" / "dialog" / "avi" / "DivX" / "Ses01F_impro01.avi")
    return root


def test_iemocap_reads_label_transcription_and_wav_files(tmp_path: Path) -> None:
    root = build_iemocap(tmp_path / "IEMOCAP_full_release")
    report = BatchReport()
    data = load_corpus("iemocap", root, report=report)

    assert data.label_set.name == "iemocap4"
    by_id = {u.id: u for u in data.utterances}
    # excited counts as happy; frustrated and the no-agreement xxx are dropped
    assert {u: by_id[u].label for u in by_id} == {
        "Ses01F_impro01_F000": "neutral",
        "Ses01F_impro01_M000": "happy",
        "Ses01F_impro01_F001": "happy",
        "Ses01M_script01_1_F000": "sad",
        "Ses02F_impro02_F000": "angry",
        "Ses02F_impro02_M001": "neutral",
    }
    assert data.dropped == {"frustrated": 1, "unlabelled": 1}
    assert report.skipped == [] and report.done == 6

    first = by_id["Ses01F_impro01_F000"]
    assert first.audio == str(root / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav")
    assert (first.start, first.end) == (None, None)  # the sentence wav is the whole utterance
    assert first.video == str(root / "Session1/dialog/avi/DivX/Ses01F_impro01.avi")
    assert (first.video_start, first.video_end) == (6.2901, 8.2357)
    assert first.transcript == "Words of F000, said."
    assert (first.speaker, first.group, first.dataset) == ("Ses01_F", "Session1", "iemocap")
    assert by_id["Ses01F_impro01_M000"].speaker == "Ses01_M"
    assert by_id["Ses02F_impro02_M001"].video is None  # no avi for that dialog


def test_iemocap_label_sets_and_leave_one_session_out(tmp_path: Path) -> None:
    root = build_iemocap(tmp_path / "iemocap")
    six = load_corpus("iemocap", root, label_set=IEMOCAP_6)
    assert sorted(u.label for u in six.utterances) == sorted(
        ["neutral", "excited", "happy", "sad", "frustrated", "angry", "neutral"]
    )
    everything = load_corpus("iemocap", root, label_set="all")
    assert everything.dropped == {"unlabelled": 1}
    assert everything.label_set.classes == (
        "neutral",
        "happy",
        "excited",
        "sad",
        "angry",
        "frustrated",
    )

    folds = load_corpus("iemocap", root).folds
    assert folds.protocol == "speaker-independent"
    assert [(f.name, f.test) for f in folds] == [
        ("Session1", ("Ses01_F", "Ses01_M")),
        ("Session2", ("Ses02_F", "Ses02_M")),
    ]
    for fold in folds:
        assert len(fold.val) == 1 and not set(fold.val) & set(fold.test)


def test_iemocap_reports_unknown_codes_and_missing_audio(tmp_path: Path) -> None:
    root = build_iemocap(tmp_path / "iemocap")
    label_file = root / "Session2/dialog/EmoEvaluation/Ses02F_impro02.txt"
    label_file.write_text(label_file.read_text() + evaluation_block(7.0, 8.0, "Ses02F_impro02_F009", "zzz"))
    (root / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F001.wav").unlink()
    report = BatchReport()
    ids = {u.id for u in load_corpus("iemocap", root, report=report).utterances}
    assert "Ses01F_impro01_F001" not in ids and len(ids) == 5
    problems = sorted(str(error) for error in report.skipped)
    assert len(problems) == 2
    assert problems[0].endswith("Ses01F_impro01_F001.wav: missing sentence audio")
    assert f"{label_file}:" in problems[1] and "unknown emotion code 'zzz'" in problems[1]
    with pytest.raises(InputError):
        load_corpus("iemocap", root, report=BatchReport(strict=True))


def test_iemocap_speaker_is_session_and_gender_of_the_utterance() -> None:
    assert speaker_of("Ses01F_impro01_M000") == "Ses01_M"
    assert speaker_of("Ses05M_script02_2_F013") == "Ses05_F"


# --- CREMA-D -------------------------------------------------------------------------


def build_cremad(root: Path, actors: range = range(1001, 1007)) -> Path:
    codes = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
    for actor in actors:
        for index, emotion in enumerate(codes):
            sentence = ("IEO", "DFA", "TSI")[index % 3]
            level = "XX" if emotion == "NEU" else ("LO", "MD", "HI")[index % 3]
            tone(root / "AudioWAV" / f"{actor}_{sentence}_{emotion}_{level}.wav", seconds=0.12)
    placeholder(root / "VideoFlash" / f"{actors[0]}_IEO_ANG_LO.flv")
    return root


def test_cremad_reads_names_sentences_and_videos(tmp_path: Path) -> None:
    root = build_cremad(tmp_path / "CREMA-D")
    tone(root / "AudioWAV" / "1001_IEO_BOR_XX.wav")
    tone(root / "AudioWAV" / "1001-IEO-ANG-XX.wav")
    report = BatchReport()
    data = load_corpus("cremad", root, report=report)
    assert len(data.utterances) == 36 and len(report.skipped) == 2
    by_id = {u.id: u for u in data.utterances}
    first = by_id["1001_IEO_ANG_LO"]
    assert (first.label, first.speaker, first.transcript) == (
        "angry",
        "1001",
        "It's eleven o'clock",
    )
    assert first.video == str(root / "VideoFlash" / "1001_IEO_ANG_LO.flv")
    assert {u.label for u in data.utterances} == set(data.label_set.classes)
    disgust = by_id["1001_DFA_DIS_MD"]
    assert (disgust.label, disgust.transcript, disgust.video) == (
        "disgusted",
        "Don't forget a jacket",
        None,
    )

    folds = data.folds
    assert len(folds) == 5 and folds.protocol == "speaker-independent"
    tested = [speaker for fold in folds for speaker in fold.test]
    assert sorted(tested) == [str(a) for a in range(1001, 1007)]  # each actor tested exactly once


def test_cremad_without_audio_folder_is_not_a_release(tmp_path: Path) -> None:
    (tmp_path / "somewhere").mkdir()
    with pytest.raises(InputError, match="AudioWAV: missing folder"):
        load_corpus("cremad", tmp_path / "somewhere")


# --- MELD ----------------------------------------------------------------------------

MELD_COLUMNS = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
MELD_ROWS = {
    "train": [
        '1,"Oh my God, he\u2019s lost it.  He\u2019s totally lost it.",Phoebe,sadness,negative,0,0,4,7,'
        '"00:20:57,256","00:21:00,049"\n',
        '2,What?,Monica,surprise,negative,0,1,4,7,"00:21:03,089","00:21:04,090"\n',
        '3,"Or! Or, we could go to the bank\u2026",Joey,joy,positive,1,0,6,2,"00:03:01,000","00:03:05,000"\n',
    ],
    "dev": [
        '1,"Well, uh\u2014",Ross,neutral,neutral,0,0,8,1,"00:01:00,000","00:01:02,000"\n',
        '2,\u201cNo!\u201d,Rachel,anger,negative,0,1,8,1,"00:01:02,500","00:01:03,000"\n',
    ],
    "test": [
        "1,Why do all you\u2019re coffee mugs have numbers on the bottom?,Mark,surprise,positive,0,0,3,19,"
        '"00:14:38,127","00:14:40,378"\n',
        '2,Oh. That\u2019s so Monica can keep track.,Rachel,disgust,negative,0,1,3,19,"00:14:40,629","00:14:47,385"\n',
        '3,Ugh.,Ross,fear,negative,1,0,3,20,"00:01:00,000","00:01:01,000"\n',
    ],
}


def build_meld(root: Path, clips: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, rows in MELD_ROWS.items():
        text = MELD_COLUMNS + "".join(rows)
        # the dev file is saved as Windows-1252, as some copies of the release are
        encoding = "cp1252" if split == "dev" else "utf-8"
        (root / f"{split}_sent_emo.csv").write_bytes(text.encode(encoding))
    if clips:
        for dialogue, utterance in ((0, 0), (0, 1), (1, 0)):
            placeholder(root / "train_splits" / f"dia{dialogue}_utt{utterance}.mp4")
        for dialogue, utterance in ((0, 0), (0, 1)):
            tone(root / "dev_splits_complete" / f"dia{dialogue}_utt{utterance}.wav")
        for dialogue, utterance in ((0, 0), (0, 1), (1, 0)):
            placeholder(root / "test" / "output_repeated_splits_test" / f"dia{dialogue}_utt{utterance}.mp4")
    return root


def test_meld_text_only_reads_all_splits_robustly(tmp_path: Path) -> None:
    data = load_corpus("meld", build_meld(tmp_path / "MELD.Raw"))
    by_id = {u.id: u for u in data.utterances}
    assert len(by_id) == 8
    assert all(u.audio is None and u.video is None for u in data.utterances)
    first = by_id["train_dia0_utt0"]
    assert first.transcript == "Oh my God, he's lost it. He's totally lost it."
    assert (first.label, first.speaker, first.group) == ("sad", "Phoebe", "train_dia0")
    assert by_id["train_dia1_utt0"].transcript == "Or! Or, we could go to the bank..."
    assert by_id["dev_dia0_utt0"].transcript == "Well, uh-"
    assert by_id["dev_dia0_utt1"].transcript == '"No!"'
    assert by_id["test_dia0_utt1"].label == "disgusted"
    assert by_id["test_dia0_utt0"].group == "test_dia0" != by_id["train_dia0_utt0"].group

    (fold,) = data.folds
    assert data.folds.protocol == "official-split"
    train, val, test = fold.split(data.utterances)
    assert [u.id[:3] for u in train + val + test] == ["tra"] * 3 + ["dev"] * 2 + ["tes"] * 3


def test_meld_uses_clips_when_present_and_reports_missing_ones(tmp_path: Path) -> None:
    root = build_meld(tmp_path / "meld", clips=True)
    (root / "train_splits" / "dia0_utt1.mp4").unlink()
    report = BatchReport()
    by_id = {u.id: u for u in load_corpus("meld", root, report=report).utterances}
    assert [str(e) for e in report.skipped] == [f"{root / 'train_splits' / 'dia0_utt1.mp4'}: missing clip"]
    train = by_id["train_dia0_utt0"]
    assert train.audio == train.video == str(root / "train_splits" / "dia0_utt0.mp4")
    dev = by_id["dev_dia0_utt1"]
    assert dev.audio == str(root / "dev_splits_complete" / "dia0_utt1.wav") and dev.video is None
    assert by_id["test_dia1_utt0"].audio == str(root / "test" / "output_repeated_splits_test" / "dia1_utt0.mp4")


def test_meld_reports_bad_rows_and_needs_its_csvs(tmp_path: Path) -> None:
    root = build_meld(tmp_path / "meld")
    with (root / "train_sent_emo.csv").open("a") as csv_file:
        csv_file.write('4,Hm.,Joey,confusion,neutral,2,0,1,1,"0","0"\n5,Hm.,Joey,joy,neutral,x,0,1,1,"0","0"\n')
    report = BatchReport()
    assert len(load_corpus("meld", root, report=report).utterances) == 8
    assert [str(e).split("train_sent_emo.csv")[1] for e in report.skipped] == [
        ":5: unknown emotion 'confusion'",
        ":6: Dialogue_ID and Utterance_ID must be integers",
    ]
    (root / "test_sent_emo.csv").unlink()
    with pytest.raises(InputError, match=r"test_sent_emo\.csv: missing labels file"):
        load_corpus("meld", root)


def test_meld_text_normalisation_repairs_mis_decoded_punctuation() -> None:
    assert normalise("You must\x92ve had  your hands full.") == "You must've had your hands full."
    assert normalise("You mustâ€™ve had it") == "You must've had it"
    assert normalise("You must\u00e2\u0080\u0099ve had it") == "You must've had it"
    assert normalise("\u201cCaf\u00e9\u201d \u2026") == '"Caf\u00e9" ...'


def test_real_meld_split_sizes() -> None:
    data = load_corpus("meld", real("meld"))
    train, val, test = data.folds[0].split(data.utterances)
    assert (len(train), len(val), len(test)) == (9989, 1109, 2610)
    assert data.dropped == {} and all(u.transcript for u in data.utterances)


# --- EmoDB, SAVEE, TESS --------------------------------------------------------------


def build_emodb(root: Path) -> Path:
    for speaker in ("03", "08", "09", "10", "11"):
        for sentence, emotion in (
            ("a01", "W"),
            ("a02", "L"),
            ("b01", "E"),
            ("b10", "A"),
            ("a04", "F"),
            ("a05", "T"),
            ("a07", "N"),
        ):
            tone(root / "wav" / f"{speaker}{sentence}{emotion}a.wav", seconds=0.12)
    return root


def test_emodb_reads_speaker_sentence_and_emotion_letters(tmp_path: Path) -> None:
    root = build_emodb(tmp_path / "emodb")
    tone(root / "wav" / "03a03Wa.wav")  # a03 is not one of the ten sentences
    report = BatchReport()
    data = load_corpus("emodb", root, report=report)
    assert len(data.utterances) == 35 and len(report.skipped) == 1
    first = data.utterances[0]
    assert (first.id, first.speaker, first.label) == ("03a01Wa", "03", "angry")
    assert first.transcript == "Der Lappen liegt auf dem Eisschrank."
    assert {u.label for u in data.utterances} == set(data.label_set.classes)  # bored included
    assert len(data.folds) == 5 and sorted(s for f in data.folds for s in f.test) == [
        "03",
        "08",
        "09",
        "10",
        "11",
    ]


def test_savee_reads_prefix_codes_with_leave_one_speaker_out(tmp_path: Path) -> None:
    root = tmp_path / "SAVEE"
    for speaker in ("DC", "JE", "JK", "KL"):
        for name in ("a01", "d02", "f03", "h04", "n05", "n30", "sa01", "su15"):
            tone(root / "AudioData" / speaker / f"{name}.wav", seconds=0.12)
    tone(root / "AudioData" / "KL" / "x01.wav")
    report = BatchReport()
    data = load_corpus("savee", root, report=report)
    assert len(data.utterances) == 32 and len(report.skipped) == 1
    labels = {u.id: u.label for u in data.utterances if u.speaker == "DC"}
    assert labels == {
        "DC_a01": "angry",
        "DC_d02": "disgusted",
        "DC_f03": "fearful",
        "DC_h04": "happy",
        "DC_n05": "neutral",
        "DC_n30": "neutral",
        "DC_sa01": "sad",
        "DC_su15": "surprised",
    }
    assert [f.test for f in data.folds] == [("DC",), ("JE",), ("JK",), ("KL",)]
    assert all(len(f.val) == 1 and f.val[0] not in f.test for f in data.folds)


def test_tess_reads_folders_words_and_emotions(tmp_path: Path) -> None:
    root = tmp_path / "TESS Toronto emotional speech set data"
    for speaker in ("OAF", "YAF"):
        for folder, word, emotion in (
            ("angry", "back", "angry"),
            ("disgust", "bar", "disgust"),
            ("Fear", "base", "fear"),
            ("happy", "bath", "happy"),
            ("neutral", "bean", "neutral"),
            ("Sad", "beg", "sad"),
            ("pleasant_surprised", "bite", "ps"),
        ):
            tone(root / f"{speaker}_{folder}" / f"{speaker}_{word}_{emotion}.wav", seconds=0.12)
    data = load_corpus("tess", root)
    by_id = {u.id: u for u in data.utterances}
    assert len(by_id) == 14
    assert by_id["YAF_bite_ps"].label == "surprised"
    assert by_id["OAF_base_fear"].label == "fearful"
    assert (by_id["OAF_back_angry"].transcript, by_id["OAF_back_angry"].speaker) == (
        "Say the word back",
        "OAF",
    )
    # two speakers: leave-one-speaker-out leaves one training speaker and no validation speaker
    assert [(f.test, f.val) for f in data.folds] == [(("OAF",), ()), (("YAF",), ())]


# --- load_corpus ---------------------------------------------------------------------


def test_load_corpus_errors_name_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'absent'}: no such file or folder")):
        load_corpus("ravdess", tmp_path / "absent")
    with pytest.raises(InputError, match="corpus 'voxceleb': unknown; known: ravdess, iemocap"):
        load_corpus("voxceleb", tmp_path)
    with pytest.raises(InputError, match="no ravdess utterances found"):
        load_corpus("ravdess", tmp_path)
    root = build_ravdess(tmp_path / "ravdess")
    with pytest.raises(InputError, match="label set 'ravdess9': unknown"):
        load_corpus("ravdess", root, label_set="ravdess9")


def test_label_set_maps_and_counts_what_it_drops(tmp_path: Path) -> None:
    root = build_ravdess(tmp_path / "ravdess")
    seven = load_corpus("ravdess", root, label_set="ravdess7")
    assert sorted(u.label for u in seven.utterances).count("neutral") == 4  # calm merged
    four = load_corpus("ravdess", root, label_set="iemocap4")
    assert four.dropped == {"calm": 2}
    assert sorted(CORPORA) == [
        "ased",
        "cremad",
        "emobox",
        "emodb",
        "iemocap",
        "manifest",
        "meld",
        "nemo",
        "ravdess",
        "ravdess-meld",
        "savee",
        "tess",
    ]


def test_real_ravdess_loads_without_decoding_audio() -> None:
    data = load_corpus("ravdess", real("ravdess"))
    assert len(data.utterances) == 1440 and len({u.speaker for u in data.utterances}) == 24
    assert all(u.audio and u.audio.endswith(".flac") for u in data.utterances)
    assert {u.transcript for u in data.utterances} == {
        "Kids are talking by the door",
        "Dogs are sitting by the door",
    }
