"""Redis and the object store going away and coming back: 503 while down, nothing lost.

Real processes (gunicorn, workers, redis-server, the S3 server); a dependency is "down"
because its process is stopped, or its connections cut by a proxy.
"""

from __future__ import annotations

import time

import pytest
import redis
import requests

from common import keys
from scripts.local import stack
from tests.helpers import (
    STEMS,
    LiveWorker,
    b64,
    lossless_stems,
    mp3_stems,
    submit,
    wait_for,
    wait_for_job,
    wait_for_status,
)
from tests.servers import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def assert_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0


def test_a_redis_restart_loses_no_job_and_rest_answers_503_meanwhile(live_stack, tmp_path,
                                                                     storage, make_mp3):
    # A Redis of this test's own (the session's is shared), restarted on the same port and dir.
    port, folder = stack.free_port(), tmp_path / "redis"
    server = stack.start_redis(port, folder, folder / "redis.log")
    client = redis.Redis(port=port, decode_responses=True)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        live_stack.start_render(REDIS_URL=url)  # the render worker on this Redis too
        workers = [LiveWorker(live_stack, REDIS_URL=url), LiveWorker(live_stack, REDIS_URL=url)]
        base_url = live_stack.start_rest(REDIS_URL=url)
        for worker in workers:
            worker.wait_ready()
        hashes = [submit(base_url, make_mp3(10, seed=30 + n)) for n in range(4)]
        wait_for(lambda: any(client.llen(keys.processing(w.id)) for w in workers), 60,
                 "no job was ever running")

        stack.stop(server)  # SIGTERM: Redis writes its AOF and exits
        latecomer = make_mp3(2, seed=39)
        # Down past the workers' heartbeat TTL: every heartbeat key has expired on its return.
        down_until = time.monotonic() + float(live_stack.env["HEARTBEAT_TTL_S"]) + 1
        while time.monotonic() < down_until:
            assert_unavailable(requests.post(f"{base_url}/apiv1/separate",
                                             json={"mp3": b64(latecomer)}, timeout=60))
            assert_unavailable(requests.get(f"{base_url}/apiv1/status/{hashes[0]}", timeout=60))
            assert_unavailable(requests.get(f"{base_url}/readyz", timeout=60))
            time.sleep(0.2)

        server = stack.start_redis(port, folder, folder / "redis.log")
        # The append-only file kept every record that was written before the restart.
        assert all(client.exists(keys.job(song_hash)) for song_hash in hashes)
        for song_hash in hashes:
            final = wait_for_status(base_url, song_hash, timeout=180)
            assert final["status"] == "done", (final, [w.log() for w in workers])
            assert mp3_stems(storage, song_hash) == STEMS
        # Heartbeats that expired while Redis was down did not make live workers look dead.
        assert [int(client.hget(keys.job(h), "deaths")) for h in hashes] == [0] * len(hashes)
        submit(base_url, latecomer)  # recovered without restarting anything
        assert all(worker.process.poll() is None for worker in workers)
    finally:
        live_stack.stop()
        client.close()
        stack.stop(server)


def test_an_object_store_outage_at_submit_queues_nothing_then_recovers(
        make_client, service_env, redis_client, tmp_path, short_mp3):
    port = stack.free_port()
    s3 = stack.start_object_store(port, tmp_path / "s3", tmp_path / "s3.log")
    own_store = {"MINIO_HOST": f"127.0.0.1:{port}"}
    stack.create_buckets({**service_env, **own_store})
    client = make_client(**own_store)
    try:
        stack.stop(s3)
        response = client.post("/apiv1/separate", json={"mp3": b64(short_mp3)})
        assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
        assert redis_client.llen(keys.QUEUE) == 0 and not redis_client.keys("job:*")

        s3 = stack.start_object_store(port, tmp_path / "s3", tmp_path / "s3.log")
        stack.create_buckets({**service_env, **own_store})  # moto keeps nothing across a restart
        response = client.post("/apiv1/separate", json={"mp3": b64(short_mp3)})
        assert response.status_code == 200, response.json
        assert redis_client.lrange(keys.QUEUE, 0, -1) == [response.json["hash"]]
    finally:
        stack.stop(s3)


def test_redis_refusing_the_enqueue_leaves_no_upload_behind(make_client, redis_client, storage,
                                                            short_mp3):
    client = make_client(RATE_LIMIT_PER_MIN="0")
    # Reads still work, every write is refused: the song is stored, then the enqueue fails.
    redis_client.config_set("min-replicas-to-write", 1)
    try:
        response = client.post("/apiv1/separate", json={"mp3": b64(short_mp3)})
    finally:
        redis_client.config_set("min-replicas-to-write", 0)
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    assert redis_client.llen(keys.QUEUE) == 0 and not redis_client.keys("job:*")
    assert not list(storage.client.list_objects(storage.songs_bucket, recursive=True))


def test_a_store_outage_while_stems_are_stored_is_retried_not_counted(live_stack, jobs, storage,
                                                                       s3_server, make_mp3):
    proxy = TcpProxy(s3_server, delay_s=1.0)  # slow replies: time to cut between two stems
    try:
        worker = LiveWorker(live_stack, MINIO_HOST=proxy.address)
        base_url = live_stack.start_rest()
        worker.wait_ready()
        song_hash = submit(base_url, make_mp3(3, seed=40))
        wait_for(lambda: lossless_stems(storage, song_hash), 90, "no stem was ever stored",
                 interval=0.02)
        proxy.cut()
        wait_for_job(jobs, song_hash, lambda j: j.status == "queued", 60,
                     "the worker did not hand the song back to retry it")
        proxy.restore()
        final = wait_for_status(base_url, song_hash, timeout=120)
        assert final["status"] == "done", worker.log()
        assert mp3_stems(storage, song_hash) == STEMS
        job = wait_for_job(jobs, song_hash, lambda j: j.status == "done")
        assert job.deaths == 0  # a dependency outage is not the song's fault
    finally:
        proxy.close()

