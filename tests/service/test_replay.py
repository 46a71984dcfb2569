"""The replay: spooled records reach the database in order and exactly once (both databases)."""

import uuid
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from structlog.typing import EventDict

from leafwatch.service.feedback import submit_feedback
from leafwatch.service.recorder import Recorder
from leafwatch.service.replay import replay
from leafwatch.storage import queries
from leafwatch.storage.spool import Spool
from leafwatch.storage.tables import Feedback, Prediction, PredictionFeatureRow
from tests.service.test_recorder import (
    RETRY_S,
    counted,
    make_features,
    make_prediction,
    metrics,
    verdict,
)


def rows(sessions: sessionmaker[Session], table: type[Prediction] | type[Feedback]) -> list[str]:
    with sessions() as session:
        return sorted(str(row_id) for row_id in session.scalars(select(table.id)))


def test_spooled_records_reach_the_database_once_with_their_ids_times_and_features(
    live: sessionmaker[Session], dead: sessionmaker[Session], spool: Spool
) -> None:
    before = make_prediction("Stage4", minutes_ago=30)
    Recorder(live, None, metrics(), retry_s=RETRY_S).save_prediction(before, make_features(before))
    away = Recorder(dead, spool, metrics(), retry_s=RETRY_S)
    spooled = [make_prediction("Stage1", minutes_ago=3 - index) for index in range(3)]
    for row in spooled:
        away.save_prediction(row, make_features(row))
    on_spooled, _ = submit_feedback(away, body=verdict(spooled[0].id, right=True))
    on_before, _ = submit_feedback(away, body=verdict(before.id, right=True))  # checked at replay

    recorder = Recorder(live, spool, metrics(), retry_s=RETRY_S)
    assert replay(recorder) == 5
    assert replay(recorder) == 0
    assert spool.depth() == 0
    assert rows(live, Prediction) == sorted(str(row.id) for row in [before, *spooled])
    assert rows(live, Feedback) == sorted([str(on_spooled.id), str(on_before.id)])
    with live() as session:
        for row in spooled:
            stored = queries.get_prediction(session, prediction_id=row.id)
            assert stored.timestamp == row.timestamp
            assert stored.meta == row.meta
            features = session.get(PredictionFeatureRow, row.id)
            assert features is not None
            assert features.embedding == make_features(row).embedding.astype("<f4").tobytes()
        stored_verdict = session.get(Feedback, on_before.id)
        assert stored_verdict is not None
        assert stored_verdict.correct_class_name == "Stage4", "resolved from the prediction"
        assert stored_verdict.timestamp == on_before.timestamp
    assert counted(recorder, "prediction", "replayed") == 3
    assert counted(recorder, "feedback", "replayed") == 2


def test_a_replay_that_died_after_its_commit_inserts_nothing_twice(
    live: sessionmaker[Session], dead: sessionmaker[Session], spool: Spool
) -> None:
    away = Recorder(dead, spool, metrics(), retry_s=RETRY_S)
    row = make_prediction()
    away.save_prediction(row, make_features(row))
    feedback, _ = submit_feedback(away, body=verdict(row.id, right=True))
    # What a process that committed these rows and died before clearing the spool leaves.
    with live() as session:
        queries.add_prediction(session, row=make_prediction_copy(row), features=make_features(row))
        stored = Feedback(**{key: getattr(feedback, key) for key in FEEDBACK_COLUMNS})
        queries.add(session, row=stored)
    recorder = Recorder(live, spool, metrics(), retry_s=RETRY_S)
    assert replay(recorder) == 2
    assert spool.depth() == 0
    assert rows(live, Prediction) == [str(row.id)]
    assert rows(live, Feedback) == [str(feedback.id)]


FEEDBACK_COLUMNS = (
    "id",
    "prediction_id",
    "is_correct",
    "correct_class_id",
    "correct_class_name",
    "user_comment",
    "confidence_rating",
    "feedback_source",
    "timestamp",
)


def make_prediction_copy(row: Prediction) -> Prediction:
    copy = make_prediction(row.predicted_class_name)
    copy.id, copy.timestamp = row.id, row.timestamp
    return copy


def test_a_verdict_found_invalid_at_replay_is_rejected_logged_whole_and_counted(
    live: sessionmaker[Session],
    dead: sessionmaker[Session],
    spool: Spool,
    log_events: Callable[[], list[EventDict]],
) -> None:
    known = make_prediction("Stage5")
    Recorder(live, None, metrics(), retry_s=RETRY_S).save_prediction(known, make_features(known))
    away = Recorder(dead, spool, metrics(), retry_s=RETRY_S)
    missing = uuid.uuid4()
    nowhere, _ = submit_feedback(away, body=verdict(missing, right=True))
    contradicts, _ = submit_feedback(away, body=verdict(known.id, right=False, actual="Stage5"))
    valid, _ = submit_feedback(away, body=verdict(known.id, right=False, actual="Stage6"))

    recorder = Recorder(live, spool, metrics(), retry_s=RETRY_S)
    assert replay(recorder) == 3
    assert rows(live, Feedback) == [str(valid.id)]
    assert spool.depth() == 0
    assert counted(recorder, "feedback", "rejected") == 2
    assert counted(recorder, "feedback", "replayed") == 1
    rejected = {
        line["record_id"]: line for line in log_events() if line["event"].endswith("at replay")
    }
    assert set(rejected) == {str(nowhere.id), str(contradicts.id)}
    assert rejected[str(nowhere.id)]["reason"] == f"no prediction has id {missing}"
    assert "predicted class 'Stage5'" in rejected[str(contradicts.id)]["reason"]
    assert rejected[str(contradicts.id)]["record"]["row"]["correct_class_name"] == "Stage5"
    assert all(line["level"] == "warning" for line in rejected.values())


def test_a_verdict_waits_for_its_prediction_in_another_process_file(
    live: sessionmaker[Session], dead: sessionmaker[Session], spool: Spool
) -> None:
    other = Spool(spool.directory)  # another worker's file, held while it lives
    row = make_prediction("Stage2")
    Recorder(dead, other, metrics(), retry_s=RETRY_S).save_prediction(row, make_features(row))
    away = Recorder(dead, spool, metrics(), retry_s=RETRY_S)
    feedback, _ = submit_feedback(away, body=verdict(row.id, right=True))
    assert feedback.correct_class_name == "Stage2", "checked against the other file"

    recorder = Recorder(live, spool, metrics(), retry_s=RETRY_S)
    assert replay(recorder) == 0, "the verdict waits; the other file is not this process's"
    assert spool.own.depth() == 1
    assert counted(recorder, "feedback", "rejected") == 0
    other.close()  # its worker stops (or dies) with the prediction still spooled
    assert replay(recorder) == 1  # the orphaned file: the prediction, and the file is removed
    assert not other.own.path.exists()
    assert replay(recorder) == 1  # now the verdict
    assert rows(live, Prediction) == [str(row.id)]
    assert rows(live, Feedback) == [str(feedback.id)]


def test_replay_stops_while_the_database_is_away_and_keeps_every_record(
    dead: sessionmaker[Session], spool: Spool
) -> None:
    recorder = Recorder(dead, spool, metrics(), retry_s=RETRY_S)
    row = make_prediction()
    recorder.save_prediction(row, make_features(row))
    recorder.database_answered()
    assert replay(recorder) == 0
    assert recorder.database_away()
    assert spool.depth() == 1
