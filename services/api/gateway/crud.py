"""Database reads and writes; routes and services call these, never raw queries."""

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.models import Image, Result, User
from gateway.schemas import UserCreate
from gateway.security import hash_password, verify_password


def get_user(session: Session, user_id: uuid.UUID) -> User | None:
    return session.get(User, user_id)


def get_user_by_username(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def create_user(session: Session, user_in: UserCreate) -> User:
    user = User(username=user_in.username, hashed_password=hash_password(user_in.password), role=user_in.role)
    session.add(user)
    session.commit()
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def count_users(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User))


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with this password, or None; as slow for unknown users as for known ones."""
    user = get_user_by_username(session, username)
    if not verify_password(password, user.hashed_password if user else None):
        return None
    return user if user.is_active else None


def add_result(session: Session, image: Image, result: Result) -> Result:
    session.add_all([image, result])
    session.commit()
    return result


def get_result(session: Session, result_id: uuid.UUID) -> Result | None:
    return session.get(Result, result_id)


def list_results(session: Session, limit: int, offset: int) -> tuple[list[Result], int]:
    total = session.scalar(select(func.count()).select_from(Result))
    query = select(Result).order_by(Result.created_at.desc(), Result.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(query).unique()), total
