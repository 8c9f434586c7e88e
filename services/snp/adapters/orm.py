"""Tables of the snp service database."""

from shared.db.tables import KERNEL_TABLES

TABLES = (*KERNEL_TABLES,)
