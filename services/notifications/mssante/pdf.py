"""The same letter as a PDF (fpdf2), for software that files a PDF rather than a CDA."""

from __future__ import annotations

from fpdf import FPDF

from services.notifications.mssante.letter import Letter, french_date

# The PDF core fonts are Latin-1: typographic characters outside it get a plain equivalent.
_PLAIN = str.maketrans({"–": "-", "—": "-", "→": "->", "…": "...", "’": "'", "œ": "oe", "Œ": "OE"})


def _latin1(text: str) -> str:
    return text.translate(_PLAIN).encode("latin-1", "replace").decode("latin-1")


def letter_lines(letter: Letter) -> list[tuple[str, str]]:
    """(style, text) lines shared by the PDF: B for a heading, "" for text."""
    born = f", né(e) le {french_date(letter.birth_date)}" if letter.birth_date else ""
    ins = f" - INS {letter.ins_value}" if letter.ins_value else ""
    lines = [("B", "Patient"), ("", f"{letter.patient_name}{born}{ins}"), ("B", "Séjour")]
    lines.append(("", f"{letter.hospital_name} (FINESS {letter.hospital_finess})"))
    if letter.stay_start:
        lines.append(("", f"Du {french_date(letter.stay_start)} au {french_date(letter.stay_end) or '-'}"))
    if letter.stay_number:
        lines.append(("", f"Numéro de séjour : {letter.stay_number}"))
    if letter.referent_name:
        lines += [("B", "Référent hospitalier"), ("", letter.referent_name)]
        lines += [("", f"Téléphone : {c}") for c in (letter.referent_phone,) if c]
        lines += [("", f"MSSanté : {c}") for c in (letter.referent_mail,) if c]
    lines.append(("B", "Suivis prévus"))
    lines += [("", f"- {f.label}" + (f" : avant le {french_date(f.due)}" if f.due else "")) for f in letter.followups]
    if not letter.followups:
        lines.append(("", "Aucun suivi transmis."))
    if letter.handoff_deadline:
        lines += [("B", "Relai"), ("", f"Réponse attendue avant le {french_date(letter.handoff_deadline, True)}")]
    return lines


def pdf_document(letter: Letter) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_title(_latin1(letter.title))
    pdf.set_author("Relais")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(0, 9, _latin1(letter.title), new_x="LMARGIN", new_y="NEXT")
    for style, text in letter_lines(letter):
        pdf.set_font("Helvetica", style, 12 if style else 11)
        if style:
            pdf.ln(2)
        pdf.multi_cell(0, 6, _latin1(text), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", "I", 9)
    pdf.multi_cell(0, 5, _latin1(f"Transmis par Relais - notification {letter.notification_id}"),
                   new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
