"""gcp-storage-emulator as TensorStore (Orbax's array files) needs it:

    python -m tests.storage_emulator start --host=127.0.0.1 --port=P --in-memory ...

The emulator leaves out of a media download what TensorStore's gcs driver relies on:
the object's generation (the x-goog-generation header; without it a read fails with
"Malformed StorageGeneration") and 304 Not Modified for ifGenerationNotMatch of the
current generation. This wrapper adds both to the emulator's download handler, for the
tests only; everything else is the emulator's own.
"""
from http import HTTPStatus

from gcp_storage_emulator import __main__ as emulator
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

_emulator_download = objects.download


def _download(request, response, storage, *args, **kwargs):
    try:
        generation = storage.get_file_obj(request.params["bucket_name"],
                                          request.params["object_id"])["generation"]
    except NotFound:
        return _emulator_download(request, response, storage, *args, **kwargs)
    if request.query.get("ifGenerationNotMatch", [None])[0] == generation:
        response.status = HTTPStatus.NOT_MODIFIED
        response["x-goog-generation"] = generation
        return None
    response["x-goog-generation"] = generation
    return _emulator_download(request, response, storage, *args, **kwargs)


if __name__ == "__main__":
    objects.download = _download  # objects.get (?alt=media) looks it up at each call
    emulator.main()
