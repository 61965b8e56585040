"""bench/ingest_profile.py's accounting: waiting threads count for nothing, and each process's CPU seconds are
split as its working samples are."""

from bench.ingest_profile import BEAM_PROCESS, CONVERSION_PROCESSES, WAITING, breakdown, samples

BEAM = 'process 10:"python -c from bench.ingest_throughput import main; main()"'
CHILD = f'{BEAM};process 11:"python -c from multiprocessing.spawn import spawn_main; spawn_main()"'
RAW = "\n".join([
    f"{CHILD};_read_and_convert_all (ingestion/conversion_pool.py:95);convert (ingestion/images.py:130) 300",
    f"{CHILD};_read (ingestion/conversion_pool.py:80);read_checked (ingestion/images.py:70) 100",
    f"{CHILD};_worker (concurrent/futures/thread.py:81) 5000",
    f"{BEAM};process (ingestion/job.py:200);write (ingestion/job.py:250) 50",
    f"{BEAM};_bootstrap (threading.py:973);run (threading.py:953);channel_spin (grpc/_channel.py:1725) 9000",
    f"{BEAM} 4000",
])


def test_waits_are_set_apart_and_the_measured_cpu_is_split_by_the_working_samples():
    counts = samples(RAW)
    assert counts[CONVERSION_PROCESSES][WAITING] == 5000 and counts[BEAM_PROCESS][WAITING] == 13000
    cpu = breakdown(counts, {"beam_process": 2.0, "conversion_processes": 8.0})
    assert cpu[CONVERSION_PROCESSES] == {"decode, resize, JPEG-encode": 6.0, "blob GET of each image": 2.0}
    assert cpu[BEAM_PROCESS] == {"TFRecord shard: write and compress": 2.0}
