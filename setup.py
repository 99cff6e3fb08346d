from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "bot4.shm._native",
            sources=["bot4/shm/_native.c"],
            depends=["bot4/shm/_gate.inc", "bot4/shm/_guard.inc", "bot4/shm/_ledger.inc", "bot4/shm/_events.inc"],
            extra_compile_args=["-O2", "-std=c11", "-Wall"],
        )
    ]
)
