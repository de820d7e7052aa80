"""A minimal mzML writer for the reader's tests: the cvParams pyteomics reads, arrays as
uncompressed little-endian float64 base64 (what an instrument's converter writes, smaller)."""

from __future__ import annotations

import base64
import struct
from pathlib import Path


def _array(values, accession: str, name: str) -> str:
    data = base64.b64encode(struct.pack(f"<{len(values)}d", *values)).decode()
    return (f'<binaryDataArray encodedLength="{len(data)}">'
            '<cvParam cvRef="MS" accession="MS:1000523" name="64-bit float"/>'
            '<cvParam cvRef="MS" accession="MS:1000576" name="no compression"/>'
            f'<cvParam cvRef="MS" accession="{accession}" name="{name}"/>'
            f"<binary>{data}</binary></binaryDataArray>")


def write_mzml(path: Path, spectra: list[dict]) -> Path:
    """Each spectrum a dict: ``id``, ``level``, ``mz``, ``intensity`` and, for MS2, ``precursor_mz``
    and ``charge`` (None leaves the cvParam out)."""
    parts = []
    for index, s in enumerate(spectra):
        precursor = ""
        if s["level"] == 2:
            params = ""
            if s.get("precursor_mz") is not None:
                params += (f'<cvParam cvRef="MS" accession="MS:1000744" name="selected ion m/z" '
                           f'value="{s["precursor_mz"]}"/>')
            if s.get("charge") is not None:
                params += f'<cvParam cvRef="MS" accession="MS:1000041" name="charge state" value="{s["charge"]}"/>'
            precursor = ('<precursorList count="1"><precursor><selectedIonList count="1"><selectedIon>'
                         f"{params}</selectedIon></selectedIonList></precursor></precursorList>")
        parts.append(
            f'<spectrum index="{index}" id="{s["id"]}" defaultArrayLength="{len(s["mz"])}">'
            f'<cvParam cvRef="MS" accession="MS:1000511" name="ms level" value="{s["level"]}"/>'
            f'{precursor}<binaryDataArrayList count="2">'
            f'{_array(s["mz"], "MS:1000514", "m/z array")}{_array(s["intensity"], "MS:1000515", "intensity array")}'
            "</binaryDataArrayList></spectrum>")
    path.write_text('<?xml version="1.0" encoding="utf-8"?>\n'
                    '<mzML xmlns="http://psi.hupo.org/ms/mzml" version="1.1.0">'
                    '<cvList count="1"><cv id="MS" fullName="PSI-MS" URI="https://raw.githubusercontent.com/HUPO-PSI/'
                    'psi-ms-CV/master/psi-ms.obo"/></cvList>'
                    f'<run id="r"><spectrumList count="{len(spectra)}">{"".join(parts)}</spectrumList></run></mzML>\n')
    return path
